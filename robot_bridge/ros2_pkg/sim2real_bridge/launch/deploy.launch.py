"""Deploy a sim2real policy: `ros2 launch sim2real_bridge deploy.launch.py checkpoint:=/path/ckpt.pt`.

Arguments:
    checkpoint         the policy checkpoint (required).
    use_sim            true also starts the simulated arm (sim_robot), which serves the topic
                       interfaces (trajectory, forward) of the same controller.
    command_interface  trajectory | forward | action: joint_trajectory_controller topic,
                       forward_command_controller topic, or FollowJointTrajectory action.
    transport          auto | rclpy | dds (auto is rclpy under a ROS 2 install).
    namespace          put both nodes in this namespace (e.g. /left: a second arm in the cell).
    params_file        parameters of both nodes (default: this package's config/deploy.yaml).

`command_interface` and `transport` override the params file only when given: left out, the
file's values hold (they default to "", meaning "as the params file says").

Only `launch` and `launch_ros` are imported: both come with every ROS 2 install.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "sim2real_bridge"
# Launch arguments that override the params file only when given (default "": not given).
OPTIONAL_OVERRIDES = {"sim2real_policy_node": ("command_interface", "transport"), "sim2real_sim_robot": ("transport",)}


def _nodes(context, *args, **kwargs):
    """The two nodes, with the overrides the command line gave (evaluated at launch time)."""
    def given(name):
        return LaunchConfiguration(name).perform(context)

    params_file = given("params_file")
    namespace = given("namespace")

    def parameters(node, always):
        """The file, then `always` and the optional overrides the command line gave."""
        values = {**always, **{name: given(name) for name in OPTIONAL_OVERRIDES[node] if given(name)}}
        return [params_file, values] if values else [params_file]

    policy_node = Node(package=PACKAGE, executable="policy_node", name="sim2real_policy_node", namespace=namespace,
                       output="screen", parameters=parameters("sim2real_policy_node", {"checkpoint": given("checkpoint")}))
    # It serves both topic interfaces, so only the transport follows the arguments.
    sim_robot = Node(package=PACKAGE, executable="sim_robot", name="sim2real_sim_robot", namespace=namespace,
                     output="screen", condition=IfCondition(LaunchConfiguration("use_sim")),
                     parameters=parameters("sim2real_sim_robot", {}))
    return [sim_robot, policy_node]


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument("checkpoint", description="Path of the policy checkpoint (.pt)."),
        DeclareLaunchArgument("use_sim", default_value="false", choices=["true", "false"],
                              description="Also start the simulated arm (sim_robot)."),
        DeclareLaunchArgument("command_interface", default_value="", choices=["", "trajectory", "forward", "action"],
                              description="How joint commands reach the controller (\"\": the params file's)."),
        DeclareLaunchArgument("transport", default_value="", choices=["", "auto", "rclpy", "dds"],
                              description="Message transport of both nodes (\"\": the params file's)."),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of both nodes, e.g. /left."),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "deploy.yaml"]),
                              description="Parameters of both nodes."),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
