"""`ros2 run sim2real_bridge sim_robot`: runs `robot_bridge.sim_robot:main` with the ROS arguments."""

from __future__ import annotations

from sim2real_bridge import load_main

TARGET = "robot_bridge.sim_robot"


def main() -> object:
    return load_main(TARGET)()


if __name__ == "__main__":
    main()
