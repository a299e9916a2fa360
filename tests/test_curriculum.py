"""The reverse curriculum: handover draws, stage moves, and the loop that runs it."""

import pytest
import torch

from sim2real.curriculum import CurriculumConfig, ReverseCurriculum


def make(**kwargs) -> ReverseCurriculum:
    cfg = CurriculumConfig(enabled=True, **kwargs)
    return ReverseCurriculum(cfg, num_envs=8, episode_length=50, min_agent_steps=4,
                             generator=torch.Generator().manual_seed(0))


def test_handovers_are_drawn_within_the_stage_and_leave_the_agent_a_slice():
    cur = make(fraction=1.0, start_step=49, stage_steps=5)
    assert cur.stage == 46  # capped: the agent acts for at least min_agent_steps
    handover = cur.begin(torch.ones(8, dtype=torch.bool))
    assert ((handover <= 46) & (handover > 46 - 5)).all()
    none = make(fraction=0.0).begin(torch.ones(8, dtype=torch.bool))
    assert (none == 0).all()
    disabled = ReverseCurriculum(CurriculumConfig(enabled=False), 8, 50, 4)
    assert disabled.done and (disabled.begin(torch.ones(8, dtype=torch.bool)) == 0).all()


def test_only_masked_envs_draw_and_the_expert_acts_before_the_handover():
    cur = make(fraction=1.0, start_step=20, stage_steps=1)
    cur.begin(torch.ones(8, dtype=torch.bool))
    assert (cur.handover == 20).all()
    cur.stage = 10
    mask = torch.tensor([True] + [False] * 7)
    cur.begin(mask)
    assert cur.handover[0] == 10 and (cur.handover[1:] == 20).all()
    steps = torch.full((8,), 10)
    assert cur.expert_acts(steps).tolist() == [False] + [True] * 7
    assert cur.handed_over(steps).tolist() == [True] + [False] * 7


def test_the_stage_moves_back_only_on_enough_success_of_its_own_episodes():
    cur = make(fraction=1.0, start_step=30, stage_steps=10, window=4, success_threshold=0.5)
    cur.begin(torch.ones(8, dtype=torch.bool))
    for i, ok in enumerate([False, False, True]):
        cur.finish(i, ok)
    assert cur.stage == 30
    cur.finish(3, False)  # 1/4 < 0.5: the window slides on
    assert cur.stage == 30
    for i in (4, 5):
        cur.finish(i, True)  # last 4: F, T, T, T... -> 3/4
    assert cur.stage == 20 and not cur.outcomes
    cur.finish(6, True)  # drawn at the previous stage: not counted for this one
    assert not cur.outcomes
    state = cur.state_dict()
    other = make(fraction=1.0, start_step=30, stage_steps=10, window=4)
    other.load_state_dict(state)
    assert other.stage == 20
    cur.stage = 5
    cur.begin(torch.ones(8, dtype=torch.bool))
    for i in range(4):
        cur.finish(i, True)
    assert cur.done and (cur.begin(torch.ones(8, dtype=torch.bool)) == 0).all()


@pytest.mark.parametrize("field,value", [("fraction", 1.5), ("stage_steps", 0), ("window", 0),
                                         ("success_threshold", -0.1), ("start_step", -1)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        make(**{field: value})
