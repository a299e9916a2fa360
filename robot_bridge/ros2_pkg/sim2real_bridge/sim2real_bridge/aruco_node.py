"""`ros2 run sim2real_bridge aruco_node`: runs `robot_bridge.aruco_node:main` with the ROS arguments."""

from __future__ import annotations

from sim2real_bridge import load_main

TARGET = "robot_bridge.aruco_node"


def main() -> object:
    return load_main(TARGET)()


if __name__ == "__main__":
    main()
