"""proxies.zero_cost, each proxy's own formula: closed forms on tiny nets and the invariances its paper
states (synflow, Zen-NAS, NASWOT, grad_norm and SNIP, jacob_cov)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import proxies.zero_cost as zc
from proxies.flops import count_module
from proxies.zero_cost import score
from zero_cost_helpers import SHAPE, Lambda, conv_net, gaussian, seeded


# --- synflow ---------------------------------------------------------------------------------------


def test_synflow_closed_form_on_a_linear_chain() -> None:
    """Bias-free linear chain: R = 1ᵀ|W_L|...|W_1|1, and Σ θ ∂R/∂θ = L·R, so synflow = log(L·R)."""
    widths = [5, 7, 4, 6, 3]
    chain = nn.Sequential(*[nn.Linear(a, b, bias=False) for a, b in zip(widths, widths[1:])])
    with torch.no_grad():
        for i, layer in enumerate(chain):
            layer.weight.copy_(gaussian(tuple(layer.weight.shape), 10 + i))  # mixed signs: synflow takes |W|
    L = len(chain)
    r = torch.ones(widths[0], dtype=torch.float64)
    for layer in chain:
        r = layer.weight.detach().double().abs() @ r
    R = float(r.sum())
    assert zc.synflow(chain, (widths[0],)) == pytest.approx(math.log(L * R), rel=1e-12)
    assert score("synflow", chain, (widths[0],)) == zc.synflow(chain, (widths[0],))


def test_synflow_ignores_data_seed_and_weight_signs() -> None:
    net = seeded(conv_net, 0)
    base = score("synflow", net, SHAPE)
    assert score("synflow", net, SHAPE, batch=gaussian((4, *SHAPE), 1), seed=9) == base
    assert score("synflow", net, SHAPE, batch=gaussian((2, *SHAPE), 2), labels=torch.tensor([1, 2])) == base
    flipped = seeded(conv_net, 0)
    with torch.no_grad():
        for p in flipped.parameters():
            p.neg_()
    assert score("synflow", flipped, SHAPE) == pytest.approx(base, rel=1e-14)


def test_synflow_removes_batchnorm_and_unclips_relu6() -> None:
    """Documented choices: BN is dropped (as the paper's synflow), ReLU6 counts as ReLU."""
    with_bn = seeded(lambda: conv_net(bn=True, act=nn.ReLU6), 0)
    with torch.no_grad():
        for m in with_bn.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(5.0)
                m.running_var.fill_(0.01)
    plain = nn.Sequential(*[m if not isinstance(m, nn.ReLU6) else nn.ReLU()
                            for m in with_bn if not isinstance(m, nn.BatchNorm2d)])
    assert score("synflow", with_bn, SHAPE) == score("synflow", plain, SHAPE)


def test_wider_mlp_scores_higher_on_size_and_synflow() -> None:
    def mlp(hidden: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, 10))

    narrow, wide = seeded(lambda: mlp(8), 0), seeded(lambda: mlp(64), 0)
    for name in ("params", "macs", "synflow"):
        assert score(name, wide, (16,)) > score(name, narrow, (16,)), name


def test_size_baselines_are_the_exact_counts() -> None:
    net = conv_net()
    assert score("macs", net, SHAPE) == count_module(net, (1, *SHAPE)).macs == 8 * 64 * 9 * (3 + 8) + 80
    assert score("params", net, SHAPE) == sum(p.numel() for p in net.parameters()) == 8 * 27 + 8 * 72 + 32 + 90


# --- zen -------------------------------------------------------------------------------------------


def test_zen_of_identity_features_is_log_alpha_mean_abs_noise() -> None:
    """f(x) = x: Δ = α·ε, so zen = log(α · E Σ|ε|) = log(α · sqrt(2/π) · C·H·W) up to sampling noise."""
    shape = (3, 16, 16)
    value = score("zen", nn.Identity(), shape, features_fn=lambda m, x: x, alpha=0.05)
    assert value == pytest.approx(math.log(0.05 * math.sqrt(2 / math.pi) * math.prod(shape)), abs=0.02)


class ScaledBN(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.scale * x)


def test_zen_bn_correction_adds_log_std_of_the_bn_input() -> None:
    """BN(3x) ≈ BN(x), so the Δ term is unchanged, and the BN term grows by log sqrt(9) = log 3."""
    one, three = (score("zen", ScaledBN(s), (3, 8, 8), seed=4) for s in (1.0, 3.0))
    assert three - one == pytest.approx(math.log(3.0), abs=1e-4)
    # And the Δ term alone: BN normalises x ~ N(0, 1) to about itself, as in the identity case.
    assert one == pytest.approx(math.log(0.01 * math.sqrt(2 / math.pi) * 3 * 8 * 8), abs=0.05)


def test_zen_depends_on_the_architecture_not_the_callers_weights() -> None:
    a, b = seeded(conv_net, 0), seeded(conv_net, 1)
    assert not torch.equal(a[0].weight, b[0].weight)
    assert score("zen", a, SHAPE) == score("zen", b, SHAPE)
    assert score("zen", seeded(lambda: conv_net(width=32), 0), SHAPE) > score("zen", a, SHAPE)
    assert score("zen", seeded(lambda: conv_net(depth=6), 0), SHAPE) > score("zen", a, SHAPE)


class StemBlocksHead(nn.Module):
    """The shape of nas.builder.Network: stem, blocks and head Sequentials."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU()))
        self.blocks = nn.Sequential(nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU()))
        self.head = nn.Sequential(nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU()),
                                  Lambda(lambda x: x.mean([2, 3])), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def test_zen_default_features_stop_before_the_global_pool() -> None:
    net = StemBlocksHead()
    explicit = score("zen", net, SHAPE, features_fn=lambda m, x: m.head[0](m.blocks(m.stem(x))))
    assert score("zen", net, SHAPE) == explicit
    seq = conv_net(depth=2)  # children: conv, bn, relu, conv, bn, relu, AdaptiveAvgPool2d(1), ...
    assert score("zen", seq, SHAPE) == score("zen", seq, SHAPE, features_fn=lambda m, x: m[:6](x))
    assert score("zen", seq, SHAPE) != score("zen", seq, SHAPE, features_fn=lambda m, x: m(x))


# --- naswot ----------------------------------------------------------------------------------------


def naswot_reference(codes: torch.Tensor) -> float:
    """log det(K + I), K = C Cᵀ + (1 − C)(1 − C)ᵀ, straight from the definition."""
    c = codes.double().numpy()
    k = c @ c.T + (1 - c) @ (1 - c).T
    return float(np.linalg.slogdet(k + np.eye(len(k)))[1])


def test_naswot_closed_form_on_a_one_hidden_layer_mlp() -> None:
    net = seeded(lambda: nn.Sequential(nn.Linear(6, 20), nn.ReLU(), nn.Linear(20, 3)), 0)
    x = gaussian((5, 6), 1)
    pre = x.double() @ net[0].weight.detach().double().T + net[0].bias.detach().double()
    assert score("naswot", net, (6,), batch=x) == pytest.approx(naswot_reference(pre > 0), abs=1e-9)


def test_naswot_of_identical_inputs_is_lower_than_of_distinct_inputs() -> None:
    """Identical inputs agree on every unit: K = N_A·11ᵀ, so the score is log(1 + N·N_A) exactly."""
    net = seeded(lambda: conv_net(bn=False), 0)
    units = 2 * 8 * 8 * 8  # two ReLUs over 8 x 8 x 8 maps
    same = gaussian((1, *SHAPE), 1).repeat(6, 1, 1, 1)
    distinct = gaussian((6, *SHAPE), 1)
    low = score("naswot", net, SHAPE, batch=same)
    assert low == pytest.approx(math.log(1 + 6 * units), rel=1e-12)
    assert score("naswot", net, SHAPE, batch=distinct) > low + 20


def test_naswot_needs_an_activation_to_code() -> None:
    with pytest.raises(ValueError, match="^naswot: the module has no activation modules to code "):
        score("naswot", nn.Linear(4, 2), (4,))


# --- grad_norm, snip ------------------------------------------------------------------------------


def test_grad_norm_and_snip_closed_form_on_one_linear_layer() -> None:
    """L = CE(x Wᵀ, y): ∂L/∂W = (softmax(x Wᵀ) − onehot(y))ᵀ x / N."""
    layer = seeded(lambda: nn.Linear(6, 4, bias=False), 0)
    x, y = gaussian((5, 6), 1), torch.tensor([0, 3, 1, 1, 2])
    w = layer.weight.detach().double()
    grad = (torch.softmax(x.double() @ w.T, dim=1) - F.one_hot(y, 4).double()).T @ x.double() / 5
    gn = score("grad_norm", layer, (6,), batch=x, labels=y)
    assert gn == pytest.approx(math.log(float(grad.norm())), rel=1e-12)
    assert score("snip", layer, (6,), batch=x, labels=y) == pytest.approx(
        math.log(float((w * grad).abs().sum())), rel=1e-12)
    # Given a batch and labels, nothing is drawn: the seed does not matter.
    assert score("grad_norm", layer, (6,), batch=x, labels=y, seed=3) == gn


def test_gradient_proxies_need_logits() -> None:
    with pytest.raises(ValueError) as info:
        score("grad_norm", nn.Conv2d(3, 4, 1), SHAPE, batch_size=2)
    assert str(info.value) == ("grad_norm: the module's output has shape (2, 4, 8, 8); cross-entropy needs "
                               "(batch, classes) logits, i.e. (2, num_classes)")


# --- jacob_cov -------------------------------------------------------------------------------------


def jacob_cov_reference(rows: np.ndarray, k: float = 1e-5) -> float:
    v = np.linalg.eigvalsh(np.corrcoef(rows))
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def test_jacob_cov_matches_the_paper_formula() -> None:
    """For y = x², the Jacobian rows are 2x: nearly uncorrelated, so the score is close to its maximum −N."""
    x = gaussian((6, *SHAPE), 1)
    value = score("jacob_cov", Lambda(lambda t: t * t), SHAPE, batch=x)
    assert value == pytest.approx(jacob_cov_reference((2 * x).reshape(6, -1).double().numpy()), rel=1e-9)
    assert -6.5 < value < -6.0


def test_jacob_cov_of_identical_jacobians_is_the_closed_form_minimum() -> None:
    """A linear map has the same Jacobian row for every sample: correlation 11ᵀ, eigenvalues N and 0 (N−1 times)."""
    net = seeded(lambda: nn.Linear(12, 3), 0)
    n, k = 6, 1e-5
    expected = -((math.log(n + k) + 1 / (n + k)) + (n - 1) * (math.log(k) + 1 / k))
    assert score("jacob_cov", net, (12,), batch_size=n) == pytest.approx(expected, rel=1e-8)


def test_jacob_cov_is_finite_when_the_output_ignores_the_input() -> None:
    """All-zero Jacobian rows (NaN in the paper's corrcoef) count as eigenvalue 0: the lowest score."""
    n, k = 4, 1e-5
    value = score("jacob_cov", nn.Sequential(Lambda(lambda t: 0 * t), nn.Flatten()), SHAPE, batch_size=n)
    assert value == pytest.approx(-n * (math.log(k) + 1 / k), rel=1e-12)
