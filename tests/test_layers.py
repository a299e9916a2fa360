import torch
import torch.nn.functional as F

from sim2real.layers import EnsembleMLP, ShiftAug, SimNorm


def test_simnorm_rows_sum_to_one_per_group():
    x = torch.randn(5, 7, 64) * 10
    y = SimNorm(8)(x)
    groups = y.view(5, 7, 8, 8)
    torch.testing.assert_close(groups.sum(-1), torch.ones(5, 7, 8))
    assert (y >= 0).all()
    torch.testing.assert_close(y, F.softmax(x.view(5, 7, 8, 8), -1).view(5, 7, 64))


def _member_forward(ens: EnsembleMLP, x: torch.Tensor, i: int) -> torch.Tensor:
    h = x
    n = len(ens.weights)
    for k in range(n):
        h = h @ ens.weights[k][i] + ens.biases[k][i]
        if k < n - 1:
            h = F.mish(F.layer_norm(h, h.shape[-1:]) * ens.ln_weights[k][i] + ens.ln_biases[k][i])
    return h


def test_ensemble_matches_independent_members_and_subsets():
    ens = EnsembleMLP(4, 6, [16, 16], 5, dropout=0.0, zero_output=False).eval()
    x = torch.randn(3, 2, 6)
    out = ens(x)
    assert out.shape == (4, 3, 2, 5)
    for i in range(4):
        torch.testing.assert_close(out[i], _member_forward(ens, x, i), rtol=1e-5, atol=1e-6)
    members = torch.tensor([3, 1])
    torch.testing.assert_close(ens(x, members=members), out[members], rtol=1e-5, atol=1e-6)


def test_ensemble_detach_blocks_gradients():
    ens = EnsembleMLP(2, 4, [8], 3, zero_output=False)
    x = torch.randn(5, 4, requires_grad=True)
    ens(x, detach=True).sum().backward()
    assert x.grad is not None
    assert all(p.grad is None for p in ens.parameters())
    ens(torch.randn(5, 4)).sum().backward()
    assert all(p.grad is not None for p in ens.parameters())


def test_zero_initialised_output_layer():
    ens = EnsembleMLP(3, 4, [8], 101)
    assert torch.count_nonzero(ens(torch.randn(2, 4))) == 0


def test_shift_aug_only_in_training_and_keeps_shape():
    aug = ShiftAug(pad=3)
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(aug.eval()(x), x)
    y = aug.train()(x)
    assert y.shape == x.shape and not torch.equal(y, x)
