"""The open_drawer cabinet as boxes: one engine-free description both backends build from.

Frames: the cabinet frame sits on the table under the closed drawer's centre; the drawer
link frame is DRAWER_CENTER_Z above it and slides along the cabinet's -x. A fixed shell
(top, two sides, back; the table is its floor, its front is open) holds a hollow drawer
(bottom plate + four walls) with a fin handle on its front. Numbers come from tasks.layout.
"""

from __future__ import annotations

from tasks import layout

Vec3 = tuple[float, float, float]
Box = tuple[Vec3, Vec3]  # (centre, half extents) of one box in its frame

HX, HY, HZ = layout.DRAWER_HALF
WALL = layout.CABINET_WALL
DRAWER_CENTER_Z = layout.DRAWER_BOTTOM_GAP + HZ  # the drawer link's origin above the table
# Gap between the drawer and the shell's inner faces: the drawer slides on its joint, so
# this only keeps faces apart (no z-fighting in renders, no contact in MuJoCo).
CLEARANCE = 0.002
SHELL_INNER_TOP = DRAWER_CENTER_Z + HZ + CLEARANCE  # underside of the top plate
SHELL_INNER_HALF_Y = HY + CLEARANCE                 # inner face of a side plate
SHELL_BACK_X = HX + CLEARANCE                        # inner face of the back plate

SHELL_RGBA = (0.55, 0.42, 0.30, 1.0)
DRAWER_RGBA = (0.80, 0.68, 0.50, 1.0)
HANDLE_RGBA = (0.15, 0.15, 0.15, 1.0)


def handle_half(scale: float = 1.0) -> Vec3:
    """Half extents of the fin handle at `scale` (all three scale together)."""
    hx, hy, hz = layout.HANDLE_HALF
    return (hx * scale, hy * scale, hz * scale)


def handle_offset(scale: float = 1.0) -> Vec3:
    """The handle centre in the drawer link frame: its back face on the drawer front, centred
    in y, HANDLE_Z_BELOW_TOP below the drawer's top face. Only x depends on the scale: a
    bigger fin sticks out further but stays at the same height."""
    return (-HX - layout.HANDLE_HALF[0] * scale, 0.0, HZ - layout.HANDLE_Z_BELOW_TOP)


def drawer_boxes() -> list[Box]:
    """The drawer's bottom and walls in its link frame (handle excluded).

    The walls stand on the bottom plate and the side walls fit between the front and back
    walls, so no two boxes overlap and density x volume is the link's true mass.
    """
    wall_hz = HZ - WALL / 2  # walls span from the bottom plate's top face to the drawer top
    return [
        ((0.0, 0.0, -HZ + WALL / 2), (HX, HY, WALL / 2)),                   # bottom
        ((-HX + WALL / 2, 0.0, WALL / 2), (WALL / 2, HY, wall_hz)),         # front
        ((HX - WALL / 2, 0.0, WALL / 2), (WALL / 2, HY, wall_hz)),          # back
        ((0.0, HY - WALL / 2, WALL / 2), (HX - WALL, WALL / 2, wall_hz)),   # left
        ((0.0, -HY + WALL / 2, WALL / 2), (HX - WALL, WALL / 2, wall_hz)),  # right
    ]


def shell_boxes() -> list[Box]:
    """The shell's top, sides and back in the cabinet frame; its front is flush with the
    closed drawer's front (x = -HX)."""
    depth_half = (SHELL_BACK_X + HX) / 2    # sides and top: from the front to the back plate
    depth_mid = (SHELL_BACK_X - HX) / 2
    outer_half_y = SHELL_INNER_HALF_Y + WALL
    height = SHELL_INNER_TOP + WALL         # the back plate covers the top plate's edge
    side_hz = SHELL_INNER_TOP / 2           # sides stand on the table, under the top plate
    return [
        ((depth_mid, 0.0, SHELL_INNER_TOP + WALL / 2), (depth_half, outer_half_y, WALL / 2)),    # top
        ((depth_mid, SHELL_INNER_HALF_Y + WALL / 2, side_hz), (depth_half, WALL / 2, side_hz)),   # left
        ((depth_mid, -SHELL_INNER_HALF_Y - WALL / 2, side_hz), (depth_half, WALL / 2, side_hz)),  # right
        ((SHELL_BACK_X + WALL / 2, 0.0, height / 2), (WALL / 2, outer_half_y, height / 2)),     # back
    ]
