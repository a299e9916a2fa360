"""Deploy a sim2real policy: `ros2 launch sim2real_bridge deploy.launch.py checkpoint:=/path/ckpt.pt`.

Arguments:
    checkpoint         the policy checkpoint (required).
    use_sim            true also starts the simulated arm (sim_robot), which serves the topic
                       interfaces (trajectory, forward) of the same controller.
    command_interface  trajectory | forward | action: joint_trajectory_controller topic,
                       forward_command_controller topic, or FollowJointTrajectory action.
    transport          auto | rclpy | dds (auto is rclpy under a ROS 2 install).
    params_file        parameters of both nodes (default: this package's config/deploy.yaml).

Only `launch` and `launch_ros` are imported: both come with every ROS 2 install.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "sim2real_bridge"


def generate_launch_description():
    checkpoint = LaunchConfiguration("checkpoint")
    use_sim = LaunchConfiguration("use_sim")
    command_interface = LaunchConfiguration("command_interface")
    transport = LaunchConfiguration("transport")
    params_file = LaunchConfiguration("params_file")

    arguments = [
        DeclareLaunchArgument("checkpoint", description="Path of the policy checkpoint (.pt)."),
        DeclareLaunchArgument("use_sim", default_value="false", choices=["true", "false"],
                              description="Also start the simulated arm (sim_robot)."),
        DeclareLaunchArgument("command_interface", default_value="trajectory",
                              choices=["trajectory", "forward", "action"],
                              description="How joint commands reach the controller."),
        DeclareLaunchArgument("transport", default_value="auto", choices=["auto", "rclpy", "dds"],
                              description="Message transport of both nodes."),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "deploy.yaml"]),
                              description="Parameters of both nodes."),
    ]

    # The file first, then the launch arguments, which take precedence.
    policy_node = Node(
        package=PACKAGE,
        executable="policy_node",
        name="sim2real_policy_node",
        output="screen",
        parameters=[params_file, {"checkpoint": checkpoint, "command_interface": command_interface,
                                  "transport": transport}],
    )
    sim_robot = Node(
        package=PACKAGE,
        executable="sim_robot",
        name="sim2real_sim_robot",
        output="screen",
        condition=IfCondition(use_sim),
        # It serves both topic interfaces, so only the transport follows the arguments.
        parameters=[params_file, {"transport": transport}],
    )
    return LaunchDescription([*arguments, sim_robot, policy_node])
