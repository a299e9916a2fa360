"""ament_python package sim2real_bridge: executables, launch file and parameters for the deploy.

The node code is the sim2real project's `robot_bridge` package (installed with pip); the
`sim2real_bridge` Python package here only forwards to it, so that `ros2 run` and `ros2 launch`
find the nodes under this package's name.
"""

from glob import glob

from setuptools import setup

PACKAGE = "sim2real_bridge"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        # The ament index marker: how `ros2 launch` and ament_index_python find the package.
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="sim2real maintainers",
    maintainer_email="sim2real@example.com",
    description="Launch and parameters for deploying a sim2real policy to a ROS 2 arm.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"policy_node = {PACKAGE}.policy_node:main",
            f"sim_robot = {PACKAGE}.sim_robot:main",
            f"aruco_node = {PACKAGE}.aruco_node:main",
        ],
    },
)
