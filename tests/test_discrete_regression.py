import pytest
import torch

from sim2real.discrete_regression import TwoHot, symexp, symlog


def test_symlog_symexp_are_inverse():
    x = torch.tensor([-1e4, -3.5, -1e-3, 0.0, 2e-4, 7.0, 1e5])
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-5, atol=1e-6)


def test_two_hot_round_trip_within_range():
    two_hot = TwoHot()
    x = torch.cat([torch.linspace(-1000, 1000, 257), torch.tensor([0.0, 0.1, -0.1, 3.3])]).unsqueeze(-1)
    target = two_hot.encode(x)
    assert target.shape == (x.shape[0], 101)
    torch.testing.assert_close(target.sum(-1), torch.ones(x.shape[0]))
    assert ((target > 0).sum(-1) <= 2).all(), "two-hot puts mass on at most two bins"
    # Decoding the exact target probabilities (as logits) recovers the value.
    decoded = two_hot.decode(torch.log(target.clamp_min(1e-30)))
    torch.testing.assert_close(decoded, x, rtol=1e-4, atol=1e-4)


def test_two_hot_clamps_outside_range():
    two_hot = TwoHot(num_bins=11, vmin=-2.0, vmax=2.0)
    target = two_hot.encode(torch.tensor([[1e9], [-1e9]]))
    assert target[0, -1] == 1.0 and target[1, 0] == 1.0


def test_soft_ce_is_minimised_by_the_target_distribution():
    two_hot = TwoHot()
    y = torch.tensor([[4.2]])
    best = two_hot.soft_ce(torch.log(two_hot.encode(y).clamp_min(1e-30)), y)
    other = two_hot.soft_ce(torch.log(two_hot.encode(torch.tensor([[3.0]])).clamp_min(1e-30)), y)
    assert best.shape == (1, 1) and best.item() < other.item()


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="vmax > vmin"):
        TwoHot(vmin=1.0, vmax=-1.0)
    with pytest.raises(ValueError, match="trailing dim of 1"):
        TwoHot().encode(torch.zeros(3, 2))



def test_soft_ce_by_gather_equals_the_dense_two_hot_cross_entropy():
    # soft_ce reads the two weighted log-probabilities instead of building the dense target;
    # the loss and its gradient must be those of the dense formula, also when the target
    # broadcasts over a leading ensemble dimension (the critic's [num_q, H, N, bins] logits).
    torch.manual_seed(0)
    two_hot = TwoHot()
    logits = torch.randn(3, 4, 5, 101, dtype=torch.float64, requires_grad=True)
    target = torch.cat([torch.randn(4, 4, 1) * 30, torch.tensor([[[1e9]], [[-1e9]], [[0.0]], [[2.5]]]).expand(4, 1, 1)],
                       dim=1).double()
    dense = -(_scatter_two_hot(two_hot, target) * torch.log_softmax(logits, dim=-1)).sum(-1, keepdim=True)
    torch.testing.assert_close(two_hot.encode(target), _scatter_two_hot(two_hot, target))
    fast = two_hot.soft_ce(logits, target)
    assert fast.shape == dense.shape == (3, 4, 5, 1)
    torch.testing.assert_close(fast, dense, rtol=1e-12, atol=1e-12)
    (grad_fast,) = torch.autograd.grad(fast.sum(), logits)
    (grad_dense,) = torch.autograd.grad(dense.sum(), logits)
    torch.testing.assert_close(grad_fast, grad_dense, rtol=1e-12, atol=1e-12)


def _scatter_two_hot(two_hot: TwoHot, x: torch.Tensor) -> torch.Tensor:
    """The dense two-hot target as it was built before soft_ce gathered (scatter into zeros)."""
    x = symlog(x.squeeze(-1)).clamp(two_hot.vmin, two_hot.vmax)
    pos = (x - two_hot.vmin) / two_hot.bin_size
    lower = pos.floor().clamp(max=two_hot.num_bins - 2)
    upper_weight = pos - lower
    target = torch.zeros(*x.shape, two_hot.num_bins, dtype=x.dtype)
    target.scatter_(-1, lower.long().unsqueeze(-1), (1.0 - upper_weight).unsqueeze(-1))
    target.scatter_add_(-1, lower.long().unsqueeze(-1) + 1, upper_weight.unsqueeze(-1))
    return target
