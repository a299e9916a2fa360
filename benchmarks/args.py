"""`key=value` command lines of the benchmark scripts (they print figures; Hydra would only add noise)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def key_values(argv: Sequence[str], defaults: Mapping[str, str], program: str) -> dict[str, str]:
    """`defaults` updated by `key=value` arguments; anything else exits naming the known keys."""
    args = dict(defaults)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in defaults:
            raise SystemExit(f"{program}: unexpected argument {arg!r}; expected key=value with keys {list(defaults)}")
        args[key] = value
    return args
