"""domain.init_range_scale: every spawn region's x/y half range scales about its centre, on both engines."""

import dataclasses
import importlib.util
import math
from types import SimpleNamespace

import pytest
import torch

import tasks
from tasks import layout
from tasks.domain import DomainParams, DomainRanges
from tasks.drawer_geometry import handle_offset

ENGINES = {"maniskill": "mani_skill", "mujoco": "mujoco"}
BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(importlib.util.find_spec(m) is None,
                                                    reason=f"{m} not installed"))
            for b, m in ENGINES.items()]
TOL = 1e-4  # float32 observations
EPISODES = 40

# The handle of a cabinet spawned at its nominal position, and where it is when the drawer is open.
_HANDLE = (layout.CABINET_CENTER_X + handle_offset()[0], handle_offset()[1])
_OPEN_HANDLE = (_HANDLE[0] - layout.DRAWER_SUCCESS_OPENING, _HANDLE[1])
# Per task: (observed feature, centre of its spawn region's xy, nominal half range).
SPAWN = {
    "push_cube": [("obj_pose", (0.0, 0.0), layout.CUBE_SPAWN_HALF_RANGE),
                  ("goal_pos", (layout.PUSH_GOAL_OFFSET_X, 0.0), layout.CUBE_SPAWN_HALF_RANGE)],
    "pick_cube": [("obj_pose", (0.0, 0.0), layout.CUBE_SPAWN_HALF_RANGE),
                  ("goal_pos", (0.0, 0.0), layout.CUBE_SPAWN_HALF_RANGE)],
    "stack_cube": [("obj_pose", (0.0, 0.0), layout.CUBE_SPAWN_HALF_RANGE),
                   ("goal_pos", (0.0, 0.0), layout.CUBE_SPAWN_HALF_RANGE)],
    "open_drawer": [("obj_pose", _HANDLE, layout.CABINET_SPAWN_HALF_RANGE),
                    ("goal_pos", _OPEN_HANDLE, layout.CABINET_SPAWN_HALF_RANGE)],
}


def _reset_xy(env: tasks.TaskEnv, episodes: int = EPISODES) -> tuple[dict[str, torch.Tensor], list[float]]:
    """xy of obj_pose and goal_pos over `episodes` seeded resets (num_envs=2, distinct seeds),
    [episodes, 2] each, and the init_range_scale each sample was drawn with."""
    xy: dict[str, list[torch.Tensor]] = {"obj_pose": [], "goal_pos": []}
    scales: list[float] = []
    for seed in range(0, episodes, env.num_envs):
        obs, _ = env.reset(seed=seed)
        for k in xy:
            xy[k].append(obs[k][:, :2])
        scales += [d.init_range_scale for d in env.env_domains]
    return {k: torch.cat(v) for k, v in xy.items()}, scales


def _offsets(task: str, xy: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor, float]]:
    """|xy - centre| per spawn region, with the region's nominal half range."""
    return [(f, (xy[f] - torch.tensor(centre)).abs(), half) for f, centre, half in SPAWN[task]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("task", tasks.TASKS)
def test_spawn_regions_scale_about_their_centres(backend: str, task: str):
    for scale in (1.0, 2.0):
        env = tasks.make_env(task, backend, num_envs=2, domain=DomainParams(init_range_scale=scale))
        xy, _ = _reset_xy(env)
        env.close()
        for feature, offset, half in _offsets(task, xy):
            assert offset.max() <= half * scale + TOL, (feature, scale, offset.max())
            # The samples fill the scaled region: some lie beyond 80 % of its half range.
            assert offset.max() > 0.8 * half * scale, (feature, scale, offset.max())
            if scale > 1:
                assert (offset > half + TOL).any(), (feature, "no sample left the nominal region")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_stacked_cubes_never_overlap_at_any_spawn_scale(backend: str, scale: float):
    env = tasks.make_env("stack_cube", backend, num_envs=2, domain=DomainParams(init_range_scale=scale))
    xy, _ = _reset_xy(env)
    env.close()
    for feature, offset, half in _offsets("stack_cube", xy):
        assert offset.max() <= half * scale + TOL, (feature, offset.max())
    separation = torch.linalg.norm(xy["obj_pose"] - xy["goal_pos"], dim=1)
    assert separation.min() >= layout.STACK_MIN_SEPARATION - TOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_stack_spawn_square_too_small_for_two_cubes_names_the_field(backend: str):
    # 0.1 gives a 0.02 m square: its diagonal is shorter than the cubes' minimum separation.
    with pytest.raises(ValueError, match="stack_cube: domain.init_range_scale=0.1 is too small"):
        env = tasks.make_env("stack_cube", backend, num_envs=1, domain=DomainParams(init_range_scale=0.1))
        env.reset(seed=0)


def _only_spawn_randomised(low: float, high: float) -> DomainRanges:
    """Ranges that keep every other field nominal (no scene rebuilds) and draw init_range_scale."""
    nominal = DomainParams()
    pinned = {f.name: [getattr(nominal, f.name)] * 2 for f in dataclasses.fields(DomainRanges)}
    return DomainRanges(**{**pinned, "init_range_scale": [low, high]})


@pytest.mark.parametrize("backend", BACKENDS)
def test_randomised_spawn_scale_is_each_envs_own(backend: str):
    domain = DomainParams(randomize=True, ranges=_only_spawn_randomised(0.5, 2.0))
    env = tasks.make_env("pick_cube", backend, num_envs=2, domain=domain)
    xy, scales = _reset_xy(env)
    env.close()
    scales_t = torch.tensor(scales).unsqueeze(1)
    assert len(set(scales)) == len(scales)
    for feature, offset, half in _offsets("pick_cube", xy):
        assert (offset <= half * scales_t + TOL).all(), feature


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_invalid_init_range_scale_names_the_field(value: float):
    with pytest.raises(ValueError, match=f"domain.init_range_scale={value}: a scale must be a finite number > 0"):
        DomainParams(init_range_scale=value)


def test_inverted_init_range_scale_range_names_the_field():
    with pytest.raises(ValueError, match=r"domain.ranges.init_range_scale=\[2.0, 1.0\]"):
        DomainParams(ranges=DomainRanges(init_range_scale=[2.0, 1.0]))


def test_randomisation_leaves_the_spawn_scale_nominal_by_default():
    draws = DomainParams(randomize=True).sample(16, torch.Generator().manual_seed(0))
    assert {d.init_range_scale for d in draws} == {1.0}
    assert DomainParams().values()["init_range_scale"] == 1.0


@pytest.mark.skipif(importlib.util.find_spec("mani_skill") is None, reason="mani_skill not installed")
def test_physx_cuda_accepts_a_fixed_spawn_scale_and_refuses_randomising_it():
    # The GPU check alone (no GPU needed): one value for the batched scene is fine, per-env draws are not.
    from tasks.maniskill import ManiSkillEnv

    ManiSkillEnv._check_gpu_domain(SimpleNamespace(domain=DomainParams(init_range_scale=2.0)))
    randomised = DomainParams(randomize=True, ranges=_only_spawn_randomised(0.5, 2.0))
    with pytest.raises(NotImplementedError, match="physx_cuda"):
        ManiSkillEnv._check_gpu_domain(SimpleNamespace(domain=randomised))
