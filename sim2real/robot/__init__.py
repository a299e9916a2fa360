"""Robot description: each arm described once, from its URDF and configs/arm/<name>.yaml.

The bottom layer of the package (numpy, PyYAML and the standard library only): nothing here
imports sim2real's other modules, tasks or robot_bridge (the import contract in pyproject.toml).

    arm = load_arm("so100")
    pos, quat = arm.fk(arm.rest_qpos)
"""

from sim2real.robot.description import ArmDescription, Control, Gripper, load_arm
from sim2real.robot.kinematics import IkSolution, JointLimit, KinematicChain

__all__ = ["ArmDescription", "Control", "Gripper", "IkSolution", "JointLimit", "KinematicChain", "load_arm"]
