#!/usr/bin/env python
"""Build a world model and plan with it on a toy latent task.

    python scripts/toy_latent.py                     # tiny model, TD-MPC2 MPPI defaults
    python scripts/toy_latent.py model=1m planner=deploy episodes=8
"""

from sim2real.cli import toy

if __name__ == "__main__":
    toy()
