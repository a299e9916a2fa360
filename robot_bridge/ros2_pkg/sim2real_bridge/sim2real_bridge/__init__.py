"""Entry points of the sim2real ROS 2 nodes; the nodes themselves are in `robot_bridge`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

_INSTALL_HINT = (
    "install the sim2real project into the Python that runs ROS 2: "
    "pip install -e /path/to/sim2real[ros]"
)


def load_main(module: str) -> Callable[[], object]:
    """`main` of a `robot_bridge` module, or exit with a hint when sim2real is not installed."""
    try:
        return importlib.import_module(module).main
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            sys.exit(f"sim2real_bridge: cannot import {module} ({exc}); {_INSTALL_HINT}")
        raise
