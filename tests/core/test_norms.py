"""Norm layers: train-mode formulas against hand/independent values, eval mode, statistics policy, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from norm_nerf.core.norms import NORM_KINDS, build_norm

EPS = 1e-5


def _independent(kind: str, x: np.ndarray) -> np.ndarray:
    """Reference formulas of docs/design.md §2 written with explicit loops / numpy, independent of the module."""
    n, c = x.shape
    if kind == "bn":
        return (x - x.mean(0)) / np.sqrt(x.var(0) + EPS)
    if kind == "ln":
        return (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + EPS)
    if kind == "gn":
        return (x - x.mean()) / np.sqrt(x.var(ddof=1) + EPS)
    if kind == "rms":
        return x / np.sqrt((x**2).mean(1, keepdims=True) + EPS)
    if kind == "cn":
        out = np.empty_like(x)
        for i in range(n):
            for j in range(c):
                cross = [x[k, j] for k in range(n)] + [x[i, m] for m in range(c) if m != j]
                mu = sum(cross) / (n + c)
                var = np.var(x[:, j], ddof=1) + np.var(x[i, :], ddof=1)
                out[i, j] = (x[i, j] - mu) / np.sqrt(var + EPS)
        return out
    raise AssertionError(kind)


def test_cross_norm_hand_computed() -> None:
    # x = [[1, 2], [3, 4]]: cross means 1.5, 1.75, 2, 2.25; column var 2, row var 0.5 -> sigma^2 = 2.5.
    norm = build_norm("cn", 2).train()
    y = norm(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64).double())
    s = np.sqrt(2.5 + EPS)
    expected = np.array([[-0.5 / s, 0.25 / s], [1.0 / s, 1.75 / s]])
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-12)


def test_global_norm_hand_computed() -> None:
    # all entries 1, 2, 3, 4: mean 2.5, unbiased variance 5/3.
    norm = build_norm("gn", 2).train().double()
    y = norm(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64))
    expected = (np.array([[1.0, 2.0], [3.0, 4.0]]) - 2.5) / np.sqrt(5.0 / 3.0 + EPS)
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("kind", ["bn", "ln", "gn", "cn", "rms"])
def test_train_mode_matches_independent_formula(kind: str) -> None:
    gen = np.random.default_rng(1)
    x = gen.normal(size=(7, 5)) * 3 + 1
    norm = build_norm(kind, 5).train().double()
    y = norm(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, _independent(kind, x), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["bn", "ln", "gn", "cn", "rms"])
def test_affine_init_and_application(kind: str) -> None:
    norm = build_norm(kind, 4).double()
    assert torch.equal(norm.weight, torch.ones(4, dtype=torch.float64))
    assert torch.equal(norm.bias, torch.zeros(4, dtype=torch.float64))
    x = torch.randn(9, 4, dtype=torch.float64)
    plain = norm(x)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, -1.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    torch.testing.assert_close(norm(x), plain * norm.weight + norm.bias)


@pytest.mark.parametrize("kind", ["bn", "ln", "gn", "cn", "rms"])
def test_leading_dims_are_flattened(kind: str) -> None:
    norm = build_norm(kind, 3).train()
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(norm(x), norm(x.reshape(10, 3)).reshape(2, 5, 3))


@pytest.mark.parametrize("kind", ["cn", "gn", "bn"])
def test_gradcheck(kind: str) -> None:
    norm = build_norm(kind, 4).train().double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(norm, (x,))


@pytest.mark.parametrize("kind", ["cn", "gn", "bn"])
def test_single_point_and_single_channel_are_finite(kind: str) -> None:
    for shape in [(1, 4), (5, 1), (1, 1)]:
        y = build_norm(kind, shape[1]).train()(torch.randn(*shape))
        assert torch.isfinite(y).all(), (kind, shape)


def _trained(kind: str, steps: int = 5, n: int = 64, c: int = 6) -> torch.nn.Module:
    norm = build_norm(kind, c).train()
    for _ in range(steps):
        norm(torch.randn(n, c) * 2 + 1)
    return norm.eval()


@pytest.mark.parametrize("kind", NORM_KINDS)
def test_eval_output_independent_of_chunking(kind: str) -> None:
    norm = _trained(kind)
    x = torch.randn(1000, 6) * 2 + 1
    with torch.no_grad():
        whole = norm(x)
        chunks = torch.cat([norm(part) for part in x.split(7)])
        shuffled = norm(x.flip(0)).flip(0)
    torch.testing.assert_close(chunks, whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(shuffled, whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["bn", "gn", "cn"])
def test_no_grad_forward_leaves_statistics_untouched(kind: str) -> None:
    norm = _trained(kind).train()
    before = {k: v.clone() for k, v in norm.named_buffers()}
    with torch.no_grad():
        norm(torch.randn(32, 6) * 5)
    for k, v in norm.named_buffers():
        assert torch.equal(v, before[k]), k
    norm(torch.randn(32, 6) * 5)  # with gradients: a training batch, updates
    assert not torch.equal(norm.running_mean, before["running_mean"])  # (slots, C) buffer


def test_update_under_no_grad_option() -> None:
    norm = build_norm("cn", 3, update_under_no_grad=True).train()
    with torch.no_grad():
        norm(torch.randn(10, 3) + 4)
    assert norm.tracked() == 1


def test_running_statistics_follow_momentum() -> None:
    norm = build_norm("cn", 3, momentum=0.25).train()
    x = torch.randn(20, 3, dtype=torch.float32) * 2 + 3
    norm(x)
    torch.testing.assert_close(norm.stat("running_mean"), 0.25 * x.mean(0))
    torch.testing.assert_close(norm.stat("running_var"), 0.75 + 0.25 * x.var(0))
    torch.testing.assert_close(norm.stat("running_n"), torch.tensor([0.25 * 20]))


@pytest.mark.parametrize("kind", ["bn", "gn", "cn"])
def test_statistic_slots_are_independent(kind: str) -> None:
    from norm_nerf.core.norms import stat_slot

    norm = build_norm(kind, 3, momentum=None, num_slots=2).train()
    a, b = torch.randn(30, 3), torch.randn(30, 3) * 5 + 10
    norm(a)
    with stat_slot(norm, 1):
        norm(b)
    norm.eval()
    with torch.no_grad():
        ya = norm(a)
        with stat_slot(norm, 1):
            yb = norm(b)
    norm.train()
    with torch.no_grad():
        ta = norm(a)
        with stat_slot(norm, 1):
            tb = norm(b)
    tol = dict(rtol=0.05, atol=0.05) if kind == "bn" else {}  # bn: unbiased running var vs biased batch var
    torch.testing.assert_close(ya, ta, **tol)
    torch.testing.assert_close(yb, tb, **tol)
    assert norm.slot == 0 and norm.num_batches_tracked.tolist() == [1, 1]
    with pytest.raises(ValueError, match="has 2 slot"), stat_slot(norm, 2):
        pass


@pytest.mark.parametrize("kind", ["cn", "gn"])
def test_eval_equals_train_with_exact_statistics(kind: str) -> None:
    norm = build_norm(kind, 5, momentum=None).train().double()
    x = torch.randn(40, 5, dtype=torch.float64) * 3 + 2
    y_train = norm(x)
    y_eval = norm.eval()(x)
    torch.testing.assert_close(y_eval, y_train)


def test_cross_norm_eval_uses_running_batch_size() -> None:
    norm = build_norm("cn", 2, momentum=None).train().double()
    norm(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64))
    norm.eval()
    # one point [1, 2] alone: mean = (2*[2, 3] + 2*1.5 - [1, 2]) / 4, var = [2, 2] + 0.5.
    y = norm(torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    mu = (2 * np.array([2.0, 3.0]) + 3.0 - np.array([1.0, 2.0])) / 4
    np.testing.assert_allclose(y.detach().numpy()[0], (np.array([1.0, 2.0]) - mu) / np.sqrt(2.5 + EPS), rtol=1e-12)


def test_eval_before_training_warns() -> None:
    norm = build_norm("bn", 3).eval()
    with pytest.warns(UserWarning, match="never seen a training batch"):
        norm(torch.randn(4, 3))


def test_unknown_norm_lists_valid_kinds() -> None:
    with pytest.raises(ValueError, match="valid norms are: none, bn, ln, gn, cn, rms"):
        build_norm("group", 4)


@pytest.mark.parametrize("kind", ["bn", "ln", "gn", "cn", "rms"])
def test_wrong_feature_size_is_a_clear_error(kind: str) -> None:
    with pytest.raises(ValueError, match=r"expects inputs of shape \(\.\.\., 4\), got \(3, 5\)"):
        build_norm(kind, 4)(torch.randn(3, 5))


@pytest.mark.parametrize("kind", ["bn", "gn", "cn"])
def test_empty_batch_in_train_mode_is_a_clear_error(kind: str) -> None:
    with pytest.raises(ValueError, match="empty batch"):
        build_norm(kind, 4).train()(torch.randn(0, 4))


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="momentum"):
        build_norm("bn", 4, momentum=0.0)
    with pytest.raises(TypeError, match="unknown options"):
        build_norm("cn", 4, mommentum=0.1)
    with pytest.raises(ValueError, match="num_features"):
        build_norm("cn", 0)


@pytest.mark.parametrize("impl", ["reference", "fast"])
@pytest.mark.parametrize("kind", ["bn", "gn", "cn"])
def test_frozen_statistics_blocks_updates_of_training_passes(kind: str, impl: str) -> None:
    from norm_nerf.core.norms import frozen_statistics

    net = torch.nn.Sequential(build_norm(kind, 4, impl=impl), build_norm(kind, 4, impl=impl)).train()
    x = torch.randn(16, 4, requires_grad=True)
    expected = copy.deepcopy(net)(x)  # batch statistics, as in any train-mode pass
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with frozen_statistics(net):
        y = net(x)  # a train-mode pass with gradients: normally an update
        with frozen_statistics(net):
            net(x)
        net(x)  # still frozen after the nested block ends
    y.sum().backward()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    torch.testing.assert_close(y, expected)
    net(x)
    assert not torch.equal(net.state_dict()["0.running_mean"], before["0.running_mean"])
    with frozen_statistics(net, enabled=False):
        net(x)
    assert int(net.state_dict()["0.num_batches_tracked"][0]) == 2
