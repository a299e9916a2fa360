"""The open_drawer cabinet as an MJCF piece, from the boxes of tasks.drawer_geometry (the
ManiSkill version builds the same boxes): the drawer slides towards -x, range
[0, DRAWER_TRAVEL], 0 = closed (drawer front flush with the shell's front).
"""

from __future__ import annotations

import numpy as np
from dm_control import mjcf

from tasks import layout
from tasks.drawer_geometry import (DRAWER_CENTER_Z, DRAWER_RGBA, HANDLE_RGBA, SHELL_RGBA, drawer_boxes,
                                   handle_offset, shell_boxes)
from tasks.mujoco.contact import set_geom_defaults

def build_cabinet() -> mjcf.RootElement:
    """The cabinet: shell body (fixed where it is attached) with the drawer body on its slide."""
    cab = mjcf.RootElement(model="cabinet")
    set_geom_defaults(cab)
    shell = cab.worldbody.add("body", name="shell")
    for k, (centre, half) in enumerate(shell_boxes()):
        shell.add("geom", name=f"shell{k}", type="box", pos=centre, size=half, rgba=SHELL_RGBA)
    drawer = shell.add("body", name="drawer", pos=(0, 0, DRAWER_CENTER_Z))
    drawer.add("joint", name="slide", type="slide", axis=(-1, 0, 0), limited=True, range=(0, layout.DRAWER_TRAVEL),
               damping=layout.DRAWER_JOINT_DAMPING)
    boxes = drawer_boxes()
    handle_half = layout.HANDLE_HALF
    volume = sum(8 * h[0] * h[1] * h[2] for _, h in boxes) + 8 * np.prod(handle_half)
    # One density for every box, handle included, so the drawer weighs DRAWER_MASS (MuJoCo
    # derives its inertia from the boxes, as SAPIEN does).
    density = layout.DRAWER_MASS / volume
    for k, (centre, half) in enumerate(boxes):
        drawer.add("geom", name=f"drawer{k}", type="box", pos=centre, size=half, rgba=DRAWER_RGBA, density=density)
    drawer.add("geom", name="handle", type="box", size=handle_half, pos=handle_offset(), condim=4,
               rgba=HANDLE_RGBA, density=density)
    return cab
