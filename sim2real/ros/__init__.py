"""ROS 2 data without a ROS graph: message types and their CDR codec, camera frames, the episode
bags sim2real records, and observation assembly from messages.

Below the data readers and the bridge, above the robot description (the import contract in
pyproject.toml): reading a recording needs no transport, and the live bridge and the readers
decode messages and build observations in one place.
"""
