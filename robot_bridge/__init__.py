"""ROS 2 bridge: policy node, safety, transports, simulated arm (see the ROS 2 issue)."""
