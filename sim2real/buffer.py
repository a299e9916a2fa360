"""Episode replay buffers: whole episodes in, fixed-length slices out.

Training takes B slices of H actions and H+1 observations from two buffers of the same
class, one of expert demonstrations and one of the agent's own episodes, and joins them
expert first (`cat_batches`). A slice never crosses an episode boundary and is never
shorter than H: every transition that has H-1 more after it in its episode is an equally
likely start.

Storage is a ring of rows, one row per observation: an episode of T steps takes T+1
consecutive rows (modulo the ring size). The action taken after observation t is kept in
the same row as that observation, so a slice starting at row r is rows r..r+H of every
tensor and the whole batch is one gather; the last row of each episode has no action and
holds zeros. Whole episodes leave in the order they came in (FIFO) when a new one would
push the number of transitions past `capacity`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch

from sim2real.data.episode import Episode

STATE_DICT_VERSION = 1


@dataclass
class SliceBatch:
    """B slices of H steps, time first.

    Attributes:
        obs: named features, each [H+1, B, *shape] with the stored dtype (float32 state, uint8 rgb).
        actions: [H, B, A] float32.
        terminated: [H, B] bool; True at t when s_{t+1} is a true terminal state of its
            episode, so a TD target must not bootstrap from it.
        rewards: [H, B] float32 env rewards, for diagnosis only (zeros where an episode had none).
    """

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    terminated: torch.Tensor
    rewards: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.actions.shape[1])

    def to(self, device: str | torch.device) -> SliceBatch:
        return SliceBatch(obs={k: v.to(device) for k, v in self.obs.items()}, actions=self.actions.to(device),
                          terminated=self.terminated.to(device), rewards=self.rewards.to(device))


def cat_batches(a: SliceBatch, b: SliceBatch) -> SliceBatch:
    """Join two batches along the batch axis, `a`'s slices first (expert half, then online)."""
    if set(a.obs) != set(b.obs):
        raise ValueError(f"cannot join batches with different features: {sorted(a.obs)} and {sorted(b.obs)}")
    if a.actions.shape[0] != b.actions.shape[0]:
        raise ValueError(f"cannot join batches with different horizons: H={a.actions.shape[0]} "
                         f"and H={b.actions.shape[0]}")
    return SliceBatch(obs={k: torch.cat([a.obs[k], b.obs[k]], dim=1) for k in a.obs},
                      actions=torch.cat([a.actions, b.actions], dim=1),
                      terminated=torch.cat([a.terminated, b.terminated], dim=1),
                      rewards=torch.cat([a.rewards, b.rewards], dim=1))


class EpisodeBuffer:
    """Whole episodes, sampled as fixed-length slices.

    Storage is allocated on the first `add`, from that episode's feature shapes and dtypes,
    with `capacity + max_episodes` rows per feature (an episode of T steps needs T+1 rows).
    It is allocated with `torch.empty`, so on CPU the operating system commits memory only
    as rows are first written; the full size is still reserved, e.g. a [3, 64, 64] uint8
    camera at capacity 100 000 and max_episodes 1 000 is 1.24 GB.

    Args:
        capacity: the most transitions (actions) kept; older episodes are evicted whole.
        horizon: H, actions per slice (slices hold H+1 observations).
        device: where storage lives and sampled batches are returned.
        max_episodes: the most episodes kept, which bounds the extra rows. The default,
            capacity // horizon, is the most that can ever fit (every episode has at least
            H steps); pass a smaller bound when episodes are known to be longer, to save memory.
    """

    def __init__(self, capacity: int, horizon: int, device: str | torch.device = "cpu",
                 max_episodes: int | None = None) -> None:
        if horizon < 1:
            raise ValueError(f"EpisodeBuffer horizon must be at least 1, got {horizon}")
        if capacity < horizon:
            raise ValueError(f"EpisodeBuffer capacity {capacity} is smaller than the horizon {horizon}: "
                             "no episode would fit")
        self.capacity = int(capacity)
        self.horizon = int(horizon)
        self.device = torch.device(device)
        self.max_episodes = int(max_episodes) if max_episodes is not None else self.capacity // self.horizon
        if self.max_episodes < 1:
            raise ValueError(f"EpisodeBuffer max_episodes must be at least 1, got {self.max_episodes}")
        self.num_rows = self.capacity + self.max_episodes
        self._clear()

    def _clear(self) -> None:
        self._obs: dict[str, torch.Tensor] = {}
        self._actions: torch.Tensor | None = None
        self._rewards: torch.Tensor | None = None
        self._success: torch.Tensor | None = None
        # Per-episode index, oldest first: first row in the ring, T, and what `episodes()` returns.
        self._starts: deque[int] = deque()
        self._lengths: deque[int] = deque()
        self._terminated: deque[bool] = deque()
        self._has_rewards: deque[bool] = deque()
        self._seeds: deque[int | None] = deque()
        self._meta: deque[dict[str, Any]] = deque()
        self._next_row = 0
        self._num_transitions = 0
        self._index: dict[str, torch.Tensor] | None = None

    @property
    def num_transitions(self) -> int:
        return self._num_transitions

    @property
    def num_episodes(self) -> int:
        return len(self._lengths)

    def __len__(self) -> int:
        return self._num_transitions

    def add(self, episode: Episode, terminated: bool = False) -> None:
        """Store one whole episode, evicting the oldest ones if it would not fit.

        Args:
            episode: T actions and T+1 observations, T >= horizon.
            terminated: the episode ended in a true terminal state (its last transition is
                terminal); False means it was cut by a time limit and values bootstrap past it.
        """
        steps = self._check(episode)
        if self._actions is None:
            self._allocate(episode)
        while self._num_transitions + steps > self.capacity or self.num_episodes + 1 > self.max_episodes:
            self._evict_oldest()

        rows = (self._next_row + torch.arange(steps + 1)) % self.num_rows
        rows = rows.to(self.device)
        for name, x in episode.obs.items():
            self._obs[name][rows] = x.to(self.device)
        self._actions[rows[:-1]] = episode.actions.to(self.device)
        self._actions[rows[-1]] = 0.0
        self._rewards[rows] = 0.0
        if episode.rewards is not None:
            self._rewards[rows[:-1]] = episode.rewards.to(self.device)
        self._success[rows] = episode.success.to(self.device)

        self._starts.append(self._next_row)
        self._lengths.append(steps)
        self._terminated.append(bool(terminated))
        self._has_rewards.append(episode.rewards is not None)
        self._seeds.append(episode.seed)
        self._meta.append(dict(episode.meta))
        self._next_row = (self._next_row + steps + 1) % self.num_rows
        self._num_transitions += steps
        self._index = None

    def add_episodes(self, episodes: Iterable[Episode], terminated: bool = False) -> None:
        """Store episodes in order (all with the same `terminated` flag)."""
        for episode in episodes:
            self.add(episode, terminated=terminated)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> SliceBatch:
        """B slices, each start drawn uniformly over every valid start in the buffer.

        Args:
            batch_size: B.
            generator: a CPU generator for reproducible draws (the global one if None).
        """
        if self.num_episodes == 0:
            raise ValueError("cannot sample from an empty EpisodeBuffer: add episodes first")
        index = self._sampling_index()
        # Pick a global start number, then find its episode by the running count of starts.
        draw = torch.randint(int(index["cum"][-1]), (batch_size,), generator=generator)
        ep = torch.searchsorted(index["cum"], draw, right=True)
        offset = draw - (index["cum"][ep] - index["num_starts"][ep])
        steps = torch.arange(self.horizon + 1).unsqueeze(1)
        rows = ((index["starts"][ep] + offset).unsqueeze(0) + steps) % self.num_rows  # [H+1, B]
        last = offset.unsqueeze(0) + steps[:-1] == index["lengths"][ep] - 1
        terminated = last & index["terminated"][ep]

        rows = rows.to(self.device)
        flat, act_flat = rows.reshape(-1), rows[:-1].reshape(-1)
        obs = {name: x.index_select(0, flat).view(*rows.shape, *x.shape[1:]) for name, x in self._obs.items()}
        return SliceBatch(obs=obs,
                          actions=self._actions.index_select(0, act_flat).view(self.horizon, batch_size, -1),
                          terminated=terminated.to(self.device),
                          rewards=self._rewards.index_select(0, act_flat).view(self.horizon, batch_size))

    def episodes(self) -> Iterator[Episode]:
        """The stored episodes, oldest first, as CPU copies."""
        for i in range(self.num_episodes):
            steps = self._lengths[i]
            rows = ((self._starts[i] + torch.arange(steps + 1)) % self.num_rows).to(self.device)
            yield Episode(obs={name: x[rows].cpu() for name, x in self._obs.items()},
                          actions=self._actions[rows[:-1]].cpu(),
                          success=self._success[rows].cpu(),
                          rewards=self._rewards[rows[:-1]].cpu() if self._has_rewards[i] else None,
                          seed=self._seeds[i], meta=dict(self._meta[i]))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: settings and the stored episodes, oldest first.

        Plain dicts, lists, ints and CPU tensors, so `torch.load(weights_only=True)` reads it.
        Episodes are saved packed end to end (not the ring layout), which is all sampling
        depends on: a restored buffer gives the same slices for the same generator state.
        """
        episodes = list(self.episodes())
        return {
            "version": STATE_DICT_VERSION,
            "capacity": self.capacity,
            "horizon": self.horizon,
            "max_episodes": self.max_episodes,
            "lengths": torch.tensor(list(self._lengths), dtype=torch.long),
            "terminated": torch.tensor(list(self._terminated), dtype=torch.bool),
            "has_rewards": torch.tensor(list(self._has_rewards), dtype=torch.bool),
            "seeds": list(self._seeds),
            "meta": [dict(m) for m in self._meta],
            "obs": {name: torch.cat([e.obs[name] for e in episodes]) for name in self._obs},
            "actions": torch.cat([e.actions for e in episodes]) if episodes else torch.zeros(0),
            "rewards": torch.cat([e.rewards if e.rewards is not None else torch.zeros(e.length)
                                  for e in episodes]) if episodes else torch.zeros(0),
            "success": torch.cat([e.success for e in episodes]) if episodes else torch.zeros(0, dtype=torch.bool),
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Replace the contents with those of `state_dict()` (same capacity, horizon, max_episodes)."""
        if sd.get("version") != STATE_DICT_VERSION:
            raise ValueError(f"EpisodeBuffer state_dict has version {sd.get('version')!r}, "
                             f"expected {STATE_DICT_VERSION}")
        for key in ("capacity", "horizon", "max_episodes"):
            if int(sd[key]) != getattr(self, key):
                raise ValueError(f"EpisodeBuffer state_dict has {key}={sd[key]}, this buffer has "
                                 f"{key}={getattr(self, key)}")
        self._clear()
        obs_at = act_at = 0
        for i, steps in enumerate(sd["lengths"].tolist()):
            episode = Episode(obs={name: x[obs_at:obs_at + steps + 1] for name, x in sd["obs"].items()},
                              actions=sd["actions"][act_at:act_at + steps],
                              success=sd["success"][obs_at:obs_at + steps + 1],
                              rewards=sd["rewards"][act_at:act_at + steps] if sd["has_rewards"][i] else None,
                              seed=sd["seeds"][i], meta=dict(sd["meta"][i]))
            self.add(episode, terminated=bool(sd["terminated"][i]))
            obs_at, act_at = obs_at + steps + 1, act_at + steps

    def _check(self, episode: Episode) -> int:
        """T of a well-formed episode that fits this buffer; ValueError naming what is wrong."""
        steps = episode.length
        if episode.actions.dim() != 2:
            raise ValueError(f"episode actions have shape {list(episode.actions.shape)}, expected [T, action_dim]")
        if steps < self.horizon:
            raise ValueError(f"episode of length T={steps} is shorter than the horizon H={self.horizon}: "
                             f"it cannot give a full slice of {self.horizon} actions")
        if steps > self.capacity:
            raise ValueError(f"episode of length T={steps} is longer than the buffer capacity {self.capacity}")
        for name, x in {**episode.obs, "success": episode.success}.items():
            if x.shape[0] != steps + 1:
                raise ValueError(f"episode {name} has {x.shape[0]} steps, expected T+1={steps + 1} "
                                 f"(T={steps} actions)")
        if episode.rewards is not None and list(episode.rewards.shape) != [steps]:
            raise ValueError(f"episode rewards have shape {list(episode.rewards.shape)}, expected [{steps}]")
        if self._actions is not None:
            if set(episode.obs) != set(self._obs):
                raise ValueError(f"episode has features {sorted(episode.obs)}, the buffer holds {sorted(self._obs)}")
            for name, x in episode.obs.items():
                stored = self._obs[name]
                if x.shape[1:] != stored.shape[1:] or x.dtype != stored.dtype:
                    raise ValueError(f"episode feature {name} is {x.dtype} {list(x.shape[1:])} per step, "
                                     f"the buffer holds {stored.dtype} {list(stored.shape[1:])}")
            if episode.actions.shape[1] != self._actions.shape[1]:
                raise ValueError(f"episode actions have size {episode.actions.shape[1]}, "
                                 f"the buffer holds {self._actions.shape[1]}")
        return steps

    def _allocate(self, episode: Episode) -> None:
        rows = self.num_rows
        self._obs = {name: torch.empty((rows, *x.shape[1:]), dtype=x.dtype, device=self.device)
                     for name, x in episode.obs.items()}
        self._actions = torch.empty((rows, episode.actions.shape[1]), dtype=torch.float32, device=self.device)
        self._rewards = torch.empty(rows, dtype=torch.float32, device=self.device)
        self._success = torch.empty(rows, dtype=torch.bool, device=self.device)

    def _evict_oldest(self) -> None:
        # The freed rows need no clearing: nothing indexes them until a new episode overwrites them.
        self._num_transitions -= self._lengths.popleft()
        for index in (self._starts, self._terminated, self._has_rewards, self._seeds, self._meta):
            index.popleft()
        self._index = None

    def _sampling_index(self) -> dict[str, torch.Tensor]:
        """Per-episode tensors for vectorised sampling, rebuilt only after the contents change."""
        if self._index is None:
            lengths = torch.tensor(list(self._lengths), dtype=torch.long)
            num_starts = lengths - self.horizon + 1
            self._index = {"starts": torch.tensor(list(self._starts), dtype=torch.long), "lengths": lengths,
                           "terminated": torch.tensor(list(self._terminated), dtype=torch.bool),
                           "num_starts": num_starts, "cum": num_starts.cumsum(0)}
        return self._index


def expert_buffer(episodes: list[Episode], horizon: int, device: str | torch.device = "cpu") -> EpisodeBuffer:
    """A buffer holding exactly these demonstrations (capacity = their total transitions).

    Demonstrations are stored as time-limit truncated (terminated=False); build an
    `EpisodeBuffer` and `add` them one by one where some ended in a true terminal state.
    """
    if not episodes:
        raise ValueError("expert_buffer needs at least one episode, got none")
    buffer = EpisodeBuffer(sum(e.length for e in episodes), horizon, device=device, max_episodes=len(episodes))
    buffer.add_episodes(episodes)
    return buffer
