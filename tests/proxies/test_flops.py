"""Exact hand-computed counts for proxies.flops on small modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from proxies.flops import Counts, UncountedOpError, count_module, count_params


class WithBuffer(nn.Module):
    """Applies a binary op between the input and a fixed tensor (second operand)."""

    def __init__(self, op: str, other_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.op = op
        self.register_buffer("other", torch.ones(other_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.other if self.op == "add" else x * self.other


class Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2-style split / concat / channel shuffle with no arithmetic."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, b], dim=1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        left, right = torch.split(x, [c // 2, c // 2], dim=1)
        x = torch.cat([left, right.permute(0, 1, 3, 2).permute(0, 1, 3, 2)], dim=1)
        return nn.functional.dropout(x.reshape(n, -1).flatten(1), 0.2, training=False)


def test_conv_dense() -> None:
    c = count_module(nn.Conv2d(3, 8, 3, padding=1), (1, 3, 16, 16))
    macs = 8 * 3 * 3 * 3 * 16 * 16  # Cout * Cin * k*k * Hout*Wout; bias not counted
    assert c.macs == c.flops == macs
    assert c.by_operator == {"conv": macs}
    assert c.params == 8 * 3 * 9 + 8


def test_conv_grouped_stride2() -> None:
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=False)
    c = count_module(conv, (1, 8, 16, 16))
    assert c.macs == c.flops == 16 * (8 // 4) * 9 * 8 * 8
    assert c.params == 16 * 2 * 9


def test_conv_depthwise_stride2_batch2() -> None:
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
    c = count_module(conv, (2, 8, 16, 16))
    assert c.macs == c.flops == 2 * 8 * 1 * 9 * 8 * 8
    assert c.params == 8 * 9 + 8


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias: bool) -> None:
    c = count_module(nn.Linear(10, 5, bias=bias), (3, 10))
    assert c.macs == c.flops == 3 * 10 * 5
    assert c.by_operator == {"linear": 150}
    assert c.params == 50 + (5 if bias else 0)


def test_batchnorm_eval_matches_fvcore_rule() -> None:
    from fvcore.nn import FlopCountAnalysis  # late: proxies.flops mutes its import warnings

    bn = nn.BatchNorm2d(8)
    c = count_module(bn, (1, 8, 4, 4))
    reference = FlopCountAnalysis(bn.eval(), (torch.zeros(1, 8, 4, 4),)).total()
    assert c.flops == reference == 2 * 8 * 4 * 4  # eval, affine: 2 per input element
    assert c.by_operator == {"batch_norm": 256}
    assert c.macs == 0
    assert c.params == 16  # weight + bias; running stats are buffers


def test_batchnorm_counted_in_eval_mode_and_mode_restored() -> None:
    net = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU()).train()
    net[1].eval()  # mixed modes must survive the count
    assert count_module(net, (1, 8, 4, 4)).by_operator["batch_norm"] == 256  # training: 5x
    assert net.training and net[0].training and not net[1].training


ACTIVATIONS = [
    (nn.ReLU(), "relu"),
    (nn.ReLU(inplace=True), "relu"),
    (nn.ReLU6(), "hardtanh"),
    (nn.ReLU6(inplace=True), "hardtanh"),
    (nn.Hardswish(), "hardswish"),
    (nn.Hardswish(inplace=True), "hardswish"),
    (nn.Hardsigmoid(), "hardsigmoid"),
    (nn.Hardsigmoid(inplace=True), "hardsigmoid"),
    (nn.Sigmoid(), "sigmoid"),
    (nn.SiLU(), "silu"),
    (nn.SiLU(inplace=True), "silu"),
]


@pytest.mark.parametrize("act,key", ACTIVATIONS, ids=[repr(a) for a, _ in ACTIVATIONS])
def test_activation_one_flop_per_element(act: nn.Module, key: str) -> None:
    c = count_module(act, (2, 3, 4, 5))
    assert c.by_operator == {key: 120}
    assert c.flops == 120 and c.macs == 0 and c.params == 0


def test_relu_handle_overrides_fvcore_ignore_list() -> None:
    from fvcore.nn import FlopCountAnalysis

    # fvcore puts aten::relu in _IGNORED_OPS (0 flops); our handle must win.
    plain = FlopCountAnalysis(nn.ReLU(), (torch.zeros(2, 3, 4, 5),))
    plain.unsupported_ops_warnings(False)
    assert plain.total() == 0
    assert count_module(nn.ReLU(), (2, 3, 4, 5)).flops == 120


def test_add() -> None:
    c = count_module(WithBuffer("add", (1, 4, 6, 6)), (1, 4, 6, 6))
    assert c.by_operator == {"add": 144} and c.flops == 144


def test_inplace_add_shares_key() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        y = x + 1
        y += x
        return y

    assert count_module(Lambda(fn), (2, 5)).by_operator == {"add": 20}


def test_broadcast_scale_counts_output_elements() -> None:
    c = count_module(WithBuffer("mul", (1, 4, 1, 1)), (1, 4, 6, 6))
    assert c.by_operator == {"mul": 4 * 6 * 6}


def test_shape_arithmetic_is_free() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, c * 1, h * w) * 2  # c * 1 and h * w are traced 0-dim muls

    assert count_module(Lambda(fn), (1, 4, 3, 3)).by_operator == {"mul": 36}


def test_mean_counts_input_elements() -> None:
    c = count_module(Lambda(lambda x: x.mean([2, 3])), (1, 4, 6, 6))
    assert c.by_operator == {"mean": 144}


def test_maxpool() -> None:
    c = count_module(nn.MaxPool2d(3, 2, 1), (1, 4, 8, 8))
    assert c.by_operator == {"max_pool2d": 4 * 4 * 4 * 9}


def test_avgpool_rectangular_kernel() -> None:
    c = count_module(nn.AvgPool2d((2, 3), stride=(2, 3)), (1, 4, 8, 9))
    assert c.by_operator == {"avg_pool2d": 4 * 4 * 3 * 6}


def test_adaptive_avgpool_fvcore_rule() -> None:
    c = count_module(nn.AdaptiveAvgPool2d(1), (1, 4, 8, 8))
    assert c.by_operator == {"adaptive_avg_pool2d": 4 * 8 * 8}  # 1 per input element


def test_channel_shuffle_is_free_and_supported() -> None:
    c = count_module(ShuffleBlock(), (1, 8, 4, 4))
    assert c == Counts.zero()


def test_params_include_bn_exclude_buffers() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4), nn.Linear(4, 2))
    assert count_params(net) == 12 + 8 + 10


def test_counts_addition_and_zero() -> None:
    a = Counts(params=1, macs=10, flops=15, by_operator={"conv": 10, "relu": 5})
    b = Counts(params=2, macs=3, flops=7, by_operator={"linear": 3, "relu": 4})
    assert a + b == Counts(3, 13, 22, {"conv": 10, "linear": 3, "relu": 9})
    assert Counts.zero() + a == a == a + Counts.zero()
    assert sum([a, b], Counts.zero()) == a + b
    assert a.by_operator == {"conv": 10, "relu": 5}  # operands untouched


def test_uncounted_op_raises_with_names_and_call_counts() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, 1) + nn.functional.gelu(x) + nn.functional.gelu(x)

    with pytest.raises(UncountedOpError) as err:
        count_module(Lambda(fn), (2, 3))
    msg = str(err.value)
    assert "aten::cumsum (1 call)" in msg and "aten::gelu (2 calls)" in msg
    assert "add a handle in proxies.flops" in msg


def test_bad_input_shape() -> None:
    with pytest.raises(ValueError):
        count_module(nn.ReLU(), ())


def test_sequential_equals_sum_of_parts() -> None:
    parts = [
        nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish()),
        nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU()),
        ShuffleBlock(),
        nn.Linear(8 * 8 * 8, 10),
    ]
    net = nn.Sequential(*parts)
    shape = (1, 3, 16, 16)
    total = count_module(net, shape)
    summed = Counts.zero()
    x = torch.zeros(shape)
    with torch.no_grad():
        for part in parts:
            summed = summed + count_module(part, tuple(x.shape))
            x = part.eval()(x)
    assert total == summed
    assert total.macs == 8 * 3 * 9 * 64 + 8 * 9 * 64 + 512 * 10
    assert total.flops == total.macs + 2 * 512 + 512 + 2 * 512 + 512
