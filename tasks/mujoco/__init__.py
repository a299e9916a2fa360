"""The four tasks in MuJoCo (through dm_control.mjcf), behind the TaskEnv interface.

    env = tasks.make_env("pick_cube", backend="mujoco", num_envs=2)

Modules: `urdf` and `meshes` read ManiSkill's Panda files, `robot` builds the arm, `contact`
holds contact parameters, `cabinet` and `scene` compose the table-top scenes, `index`
resolves names, `control` maps actions to joint targets (IK, force-limited drives), `world`
is one env's model and data, `shifts` applies domain parameters, `rules` holds the tasks,
`render` draws offscreen, `env` is the batched env.
"""

from __future__ import annotations

import os

# Headless machines render through EGL (or OSMesa). tasks.mujoco.render reads this when it
# makes a context; setting it before mujoco's first import also keeps dm_control and mujoco
# from trying GLFW (and warning that there is no display). A caller's choice is kept.
os.environ.setdefault("MUJOCO_GL", "egl")

from tasks.mujoco.env import MujocoEnv  # noqa: E402

__all__ = ["MujocoEnv"]
