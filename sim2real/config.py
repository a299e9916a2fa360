"""Structured configs: typed dataclasses registered in Hydra's ConfigStore.

The dataclasses are the schema; the YAML files under `configs/` are the presets
(`configs/model/{tiny,1m,5m,19m,48m}.yaml`, `configs/planner/{mppi,deploy,policy}.yaml`)
and are validated against it. Code receives plain dataclasses (`to_dataclass`), never
raw dict configs.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TypeVar

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class ModelConfig:
    """World-model size and architecture (TD-MPC2 presets, method.md §2.2 and §5).

    Args:
        name: preset name, recorded in checkpoints.
        latent_dim: latent size; a multiple of simnorm_dim.
        enc_dim: hidden width of the state encoder.
        mlp_dim: hidden width of dynamics, policy prior and Q networks.
        num_enc_layers: state-encoder depth (hidden layers = max(num_enc_layers - 1, 1)).
        num_q: Q ensemble members (>= 2: targets use the min of two random members).
        simnorm_dim: SimNorm group size.
        num_bins / vmin / vmax: two-hot value bins in symlog space.
        dropout: dropout on the first layer of each Q network.
        num_channels: conv channels of the RGB encoder.
        shift_pad: random-shift augmentation padding for RGB (pixels).
        log_std_min / log_std_max: range of the policy prior's log std.
        tau: Polyak rate of the target Q networks and of the running Q scale.
    """

    name: str = "tiny"
    latent_dim: int = 64
    enc_dim: int = 128
    mlp_dim: int = 256
    num_enc_layers: int = 2
    num_q: int = 2
    simnorm_dim: int = 8
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    dropout: float = 0.01
    num_channels: int = 32
    shift_pad: int = 3
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    tau: float = 0.01


@dataclass
class PlannerConfig:
    """MPPI in latent space (TD-MPC2 defaults, method.md §2.7).

    Args:
        name: preset name.
        mpc: plan with MPPI; false acts with the policy prior alone.
        horizon: planning horizon in control steps.
        iterations: MPPI refits per decision (+2 when action_dim >= 20, as TD-MPC2).
        num_samples: action sequences scored per iteration, policy-prior ones included.
        num_elites: top sequences used to refit the sampling distribution.
        num_pi_trajs: sequences rolled out by the policy prior and mixed in.
        temperature: softmax temperature over elite values.
        min_std / max_std: clamp of the sampling std (max_std is also the initial std).
        bf16: score samples under bfloat16 autocast (about 1.5x faster on CPUs with
            AVX512-BF16, at a small loss of precision in the chosen action).
    """

    name: str = "mppi"
    mpc: bool = True
    horizon: int = 3
    iterations: int = 6
    num_samples: int = 512
    num_elites: int = 64
    num_pi_trajs: int = 24
    temperature: float = 0.5
    min_std: float = 0.05
    max_std: float = 2.0
    bf16: bool = False


@dataclass
class ToyConfig:
    """The toy latent planning run (`scripts/toy_latent.py`).

    Args:
        obs_dim / action_dim: shape of the toy task.
        episodes: closed-loop episodes per controller.
        episode_steps: decisions per episode.
        goal_steps: random-action steps that place the (reachable) goal latent.
        seed: global seed.
        device: "auto" (CUDA when present), "cpu", "cuda", "cuda:N".
        output_dir: where the checkpoint is written.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    obs_dim: int = 24
    action_dim: int = 4
    episodes: int = 4
    episode_steps: int = 20
    goal_steps: int = 8
    seed: int = 1
    device: str = "auto"
    output_dir: str = "${hydra:runtime.output_dir}"


def register_configs() -> None:
    """Register the schemas; each YAML preset names its group's `schema` in its defaults."""
    cs = ConfigStore.instance()
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="planner", name="schema", node=PlannerConfig)
    cs.store(name="toy_schema", node=ToyConfig)


register_configs()

T = TypeVar("T")


def to_dataclass(cfg: DictConfig | Any, cls: type[T]) -> T:
    """A validated dataclass instance from a (possibly untyped) config node."""
    if isinstance(cfg, cls):
        return cfg
    merged = OmegaConf.merge(OmegaConf.structured(cls), cfg)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


@contextmanager
def _configs_dir() -> Iterator[None]:
    """Hydra initialised on configs/ for a compose call, also inside a running Hydra app.

    Hydra's compose API refuses to start while an app's Hydra is initialised (a `scripts/*.py`
    job that composes a stage's config): step the app's aside for the compose, then put it back,
    with the job name compose renames to "app" (the launcher names the next job's log after it).
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobRuntime

    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(
            f"config directory {CONFIG_DIR} not found; install sim2real editable from a clone "
            "(scripts/install.sh) so that configs/ sits next to the package")
    outer = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    job_name = JobRuntime.instance().get("name") if outer is not None else None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            yield
    finally:
        if outer is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(outer)
            JobRuntime.instance().set("name", job_name)


def compose_config(config_name: str, overrides: list[str] | None = None, hydra_node: bool = False) -> DictConfig:
    """Compose a config from `configs/` (tests, benchmarks, notebooks, and inside a Hydra app);
    `hydra_node`: keep the `hydra` node (its overrides and the group choices made)."""
    with _configs_dir():
        return compose(config_name=config_name, overrides=overrides or [], return_hydra_config=hydra_node)


def preset_names(group: str) -> list[str]:
    """Preset names of a config group, from the YAML files in `configs/<group>/`."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def load_preset(group: str, name: str, cls: type[T]) -> T:
    """One preset of a group as a dataclass, e.g. `load_preset("model", "5m", ModelConfig)`."""
    with _configs_dir():
        cfg = compose(config_name=f"{group}/{name}")
    return to_dataclass(cfg[group], cls)
