"""Contact parameters shared by every MJCF piece of the scene.

Friction follows ManiSkill's materials: every body has friction 0.3 except the gripper
fingers (2.0). PhysX averages the two materials of a contact (finger-on-anything: 1.15),
MuJoCo takes the larger geom coefficient, so the fingers carry 1.15 and every other
contact sees 0.3 in both engines.

Contacts are stiffer than MuJoCo's default (time constant 5 ms instead of 20 ms): a 30 N
grasp on a 64 g cube then penetrates about 0.5 mm instead of 5 mm; PhysX contacts are
rigid.
"""

from __future__ import annotations

from dm_control import mjcf

DEFAULT_FRICTION = 0.3
FINGER_FRICTION = (2.0 + DEFAULT_FRICTION) / 2
TORSIONAL_FRICTION = 0.005  # stands in for PhysX's finger patch radius: resists spinning in a grasp
ROLLING_FRICTION = 0.0001
SOLREF = (0.005, 1.0)

# Contact bits: robot geoms touch the world but not each other (the controllers never fold
# the arm onto itself; ManiSkill's SRDF disables the self-collisions that would matter).
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1
WORLD_CONTYPE, WORLD_CONAFFINITY = 1, 3


def set_geom_defaults(model: mjcf.RootElement, robot: bool = False) -> None:
    """Friction, contact stiffness and contact bits for every geom of `model` that does not override them."""
    contype, conaffinity = (ROBOT_CONTYPE, ROBOT_CONAFFINITY) if robot else (WORLD_CONTYPE, WORLD_CONAFFINITY)
    model.default.geom.set_attributes(contype=contype, conaffinity=conaffinity, solref=SOLREF,
                                      friction=(DEFAULT_FRICTION, TORSIONAL_FRICTION, ROLLING_FRICTION))


def set_finger_contacts(geom: mjcf.Element) -> None:
    """Gripper pad friction, with torsional friction (condim 4) so a held cube does not spin."""
    geom.set_attributes(friction=(FINGER_FRICTION, TORSIONAL_FRICTION, ROLLING_FRICTION), condim=4)
