from collections import Counter
from pathlib import Path

import pytest
import torch

from sim2real.buffer import EpisodeBuffer, SliceBatch, cat_batches, expert_buffer
from sim2real.data.episode import Episode

H = 3


def _episode(ep_id: int, steps: int, rewards: bool = True, rgb: bool = False) -> Episode:
    """Every value encodes (episode, step): obs = 1000*ep_id + t, action t = obs t + 0.5."""
    t = torch.arange(steps + 1, dtype=torch.float32) + 1000 * ep_id
    obs = {"qpos": t.unsqueeze(1).repeat(1, 9), "obj_pose": -t.unsqueeze(1).repeat(1, 7)}
    if rgb:
        # uint8 cannot hold 1000*id + t, so the image carries (id, t) in two channels.
        img = torch.zeros(steps + 1, 3, 64, 64, dtype=torch.uint8)
        img[:, 0] = ep_id
        img[:, 1] = torch.arange(steps + 1, dtype=torch.uint8).view(-1, 1, 1)
        obs["rgb"] = img
    return Episode(obs=obs, actions=(t[:-1] + 0.5).unsqueeze(1).repeat(1, 4),
                   success=torch.arange(steps + 1) == steps,
                   rewards=t[:-1] * 0.1 if rewards else None, seed=ep_id, meta={"id": ep_id})


def _windows(batch: SliceBatch) -> torch.Tensor:
    """The (1000*ep + t) value of every observation of every slice: [H+1, B]."""
    return batch.obs["qpos"][..., 0]


def _assert_contiguous_windows(batch: SliceBatch, lengths: dict[int, int]) -> None:
    values = _windows(batch)
    ep, t0 = (values[0] // 1000).long(), (values[0] % 1000).long()
    steps = torch.arange(H + 1).unsqueeze(1)
    assert torch.equal(values, (1000 * ep + t0 + steps).float()), "a slice is not one contiguous window"
    assert torch.equal(batch.obs["obj_pose"], -batch.obs["qpos"][..., :7])
    assert torch.equal(batch.actions, (values[:-1] + 0.5).unsqueeze(-1).expand(-1, -1, 4))
    for e, t in zip(ep.tolist(), t0.tolist()):
        assert t + H <= lengths[e], f"slice of episode {e} starting at {t} runs past its end ({lengths[e]})"


def test_slices_have_the_right_shapes_and_dtypes():
    buffer = EpisodeBuffer(capacity=1000, horizon=H)
    buffer.add_episodes(_episode(i, 20) for i in range(3))
    batch = buffer.sample(32)
    assert batch.obs["qpos"].shape == (H + 1, 32, 9) and batch.obs["qpos"].dtype == torch.float32
    assert batch.obs["obj_pose"].shape == (H + 1, 32, 7)
    assert batch.actions.shape == (H, 32, 4) and batch.actions.dtype == torch.float32
    assert batch.terminated.shape == (H, 32) and batch.terminated.dtype == torch.bool
    assert batch.rewards.shape == (H, 32) and batch.rewards.dtype == torch.float32
    assert batch.batch_size == 32
    assert len(buffer) == buffer.num_transitions == 60 and buffer.num_episodes == 3


def test_slices_are_contiguous_windows_of_one_episode():
    lengths = {0: 3, 1: 4, 2: 17, 3: 5}  # an episode of exactly H steps gives one slice
    buffer = EpisodeBuffer(capacity=1000, horizon=H)
    buffer.add_episodes(_episode(i, n) for i, n in lengths.items())
    batch = buffer.sample(2000, generator=torch.Generator().manual_seed(0))
    _assert_contiguous_windows(batch, lengths)
    values = _windows(batch)
    assert torch.allclose(batch.rewards, values[:-1] * 0.1)


def test_every_valid_start_is_reachable_and_roughly_uniform():
    lengths = {0: 5, 1: 10, 2: 3, 3: 8}
    buffer = EpisodeBuffer(capacity=1000, horizon=H)
    buffer.add_episodes(_episode(i, n) for i, n in lengths.items())
    valid = {(e, t) for e, n in lengths.items() for t in range(n - H + 1)}
    draws = 40_000
    starts = _windows(buffer.sample(draws, generator=torch.Generator().manual_seed(1)))[0].long()
    counts = Counter(((s // 1000).item(), (s % 1000).item()) for s in starts)
    assert set(counts) == valid, "every valid start and nothing else"
    expected = draws / len(valid)
    # 24 starts, ~1667 draws each: the binomial std is ~40, so 15% is a > 6 sigma bound.
    assert all(abs(c - expected) < 0.15 * expected for c in counts.values()), counts


def test_slices_stay_valid_when_the_ring_wraps():
    buffer = EpisodeBuffer(capacity=40, horizon=H, max_episodes=4)  # 44 rows
    lengths = {}
    for i, n in enumerate([9, 7, 11, 8, 10, 6, 12, 9, 5, 13]):
        buffer.add(_episode(i, n))
        lengths[i] = n
        _assert_contiguous_windows(buffer.sample(500), lengths)
    assert [e.meta["id"] for e in buffer.episodes()] == list(range(10 - buffer.num_episodes, 10))


def test_fifo_eviction_drops_the_oldest_whole_episodes():
    buffer = EpisodeBuffer(capacity=25, horizon=H)
    for i in range(6):
        buffer.add(_episode(i, 10))
        assert buffer.num_transitions <= 25
    assert buffer.num_transitions == 20 and buffer.num_episodes == 2
    assert [e.meta["id"] for e in buffer.episodes()] == [4, 5]
    starts = _windows(buffer.sample(1000))[0]
    assert set((starts // 1000).long().tolist()) == {4, 5}
    buffer.add(_episode(6, 25))  # fills it alone
    assert buffer.num_transitions == 25 and [e.meta["id"] for e in buffer.episodes()] == [6]


def test_max_episodes_bounds_the_episode_count():
    buffer = EpisodeBuffer(capacity=100, horizon=H, max_episodes=2)
    buffer.add_episodes(_episode(i, 5) for i in range(4))
    assert [e.meta["id"] for e in buffer.episodes()] == [2, 3]


def test_terminated_only_at_the_last_transition_of_terminal_episodes():
    buffer = EpisodeBuffer(capacity=1000, horizon=H)
    buffer.add(_episode(0, 6), terminated=True)
    buffer.add(_episode(1, 6))  # truncated by a time limit
    buffer.add(_episode(2, 4), terminated=True)
    batch = buffer.sample(3000, generator=torch.Generator().manual_seed(2))
    next_obs = _windows(batch)[1:]
    ep, t_next = (next_obs // 1000).long(), (next_obs % 1000).long()
    expected = ((ep == 0) & (t_next == 6)) | ((ep == 2) & (t_next == 4))
    assert torch.equal(batch.terminated, expected)
    assert batch.terminated.any() and batch.terminated[:-1].sum() < batch.terminated[-1].sum()


def test_too_short_and_malformed_episodes_are_refused():
    buffer = EpisodeBuffer(capacity=100, horizon=H)
    with pytest.raises(ValueError, match=r"length T=2 is shorter than the horizon H=3"):
        buffer.add(_episode(0, 2))
    with pytest.raises(ValueError, match=r"T=101 is longer than the buffer capacity 100"):
        buffer.add(_episode(0, 101))
    bad = _episode(0, 5)
    bad.obs["qpos"] = bad.obs["qpos"][:-1]
    with pytest.raises(ValueError, match=r"qpos has 5 steps, expected T\+1=6"):
        buffer.add(bad)
    buffer.add(_episode(0, 5))
    other = _episode(1, 5)
    other.obs["qpos"] = other.obs["qpos"][:, :8]
    with pytest.raises(ValueError, match=r"feature qpos is torch.float32 \[8\] per step, the buffer holds"):
        buffer.add(other)
    assert buffer.num_episodes == 1
    with pytest.raises(ValueError, match="empty"):
        EpisodeBuffer(capacity=100, horizon=H).sample(4)


def test_state_dict_round_trip_gives_identical_future_samples(tmp_path: Path):
    buffer = EpisodeBuffer(capacity=60, horizon=H)
    for i, n in enumerate([12, 9, 20, 15, 11, 14]):  # evicts, so the ring has wrapped
        buffer.add(_episode(i, n, rewards=i % 2 == 0), terminated=i % 3 == 0)
    path = tmp_path / "buffer.pt"
    torch.save(buffer.state_dict(), path)
    restored = EpisodeBuffer(capacity=60, horizon=H)
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert (restored.num_transitions, restored.num_episodes) == (buffer.num_transitions, buffer.num_episodes)
    for a, b in zip(buffer.episodes(), restored.episodes()):
        assert (a.seed, a.meta, a.rewards is None) == (b.seed, b.meta, b.rewards is None)
        assert torch.equal(a.actions, b.actions) and torch.equal(a.success, b.success)
    for buf in (buffer, restored):  # future adds and evictions behave the same too
        buf.add(_episode(9, 13), terminated=True)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(3):
        x, y = buffer.sample(64, generator=g1), restored.sample(64, generator=g2)
        for k in x.obs:
            assert torch.equal(x.obs[k], y.obs[k])
        assert torch.equal(x.actions, y.actions) and torch.equal(x.terminated, y.terminated)
        assert torch.equal(x.rewards, y.rewards)
    with pytest.raises(ValueError, match="capacity=60, this buffer has capacity=50"):
        EpisodeBuffer(capacity=50, horizon=H).load_state_dict(buffer.state_dict())


def test_episodes_come_back_as_stored():
    originals = [_episode(0, 7), _episode(1, 5, rewards=False)]
    buffer = expert_buffer(originals, horizon=H)
    assert buffer.capacity == buffer.num_transitions == 12
    for a, b in zip(originals, buffer.episodes()):
        assert all(torch.equal(a.obs[k], b.obs[k]) for k in a.obs)
        assert torch.equal(a.actions, b.actions) and torch.equal(a.success, b.success)
        assert (a.seed, a.meta) == (b.seed, b.meta)
    assert torch.equal(next(buffer.episodes()).rewards, originals[0].rewards)
    assert list(buffer.episodes())[1].rewards is None
    batch = buffer.sample(500)
    from_second = (_windows(batch)[:-1] // 1000) == 1
    assert from_second.any() and torch.all(batch.rewards[from_second] == 0), "no rewards read as zeros"
    with pytest.raises(ValueError, match="at least one episode"):
        expert_buffer([], horizon=H)


def test_cat_batches_puts_the_first_batch_first():
    expert = expert_buffer([_episode(0, 10)], horizon=H).sample(8)
    online = expert_buffer([_episode(1, 10)], horizon=H).sample(5)
    batch = cat_batches(expert, online)
    assert batch.batch_size == 13 and batch.obs["qpos"].shape == (H + 1, 13, 9)
    ep = (_windows(batch) // 1000).long()
    assert (ep[:, :8] == 0).all() and (ep[:, 8:] == 1).all()
    assert torch.equal(batch.actions[:, 8:], online.actions)
    assert torch.equal(batch.to("cpu").terminated, batch.terminated)
    with pytest.raises(ValueError, match="different horizons"):
        cat_batches(expert, expert_buffer([_episode(1, 10)], horizon=2).sample(5))


def test_rgb_uint8_feature():
    lengths = {0: 6, 1: 9}
    buffer = EpisodeBuffer(capacity=100, horizon=H)
    buffer.add_episodes(_episode(i, n, rgb=True) for i, n in lengths.items())
    batch = buffer.sample(64)
    rgb = batch.obs["rgb"]
    assert rgb.shape == (H + 1, 64, 3, 64, 64) and rgb.dtype == torch.uint8
    values = _windows(batch)
    assert torch.equal(rgb[:, :, 0, 5, 7].float(), values // 1000)
    assert torch.equal(rgb[:, :, 1, 63, 0].float(), values % 1000)
    _assert_contiguous_windows(batch, lengths)
