"""proxies.zero_cost: the registry and score()'s checks, invariants every proxy keeps (the caller's module
and RNG untouched, determinism), safety on deep nets, and a real search-space network. Each proxy's own
formula is tested in test_zero_cost_formulas.py."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import proxies.zero_cost as zc
from proxies.zero_cost import PROXIES, Proxy, UnknownProxyError, score
from zero_cost_helpers import SHAPE, conv_net, gaussian, seeded

ALL = sorted(PROXIES)
SEEDED = ["grad_norm", "jacob_cov", "naswot", "snip", "zen"]  # draw a batch, labels or weights from the seed


# --- registry and score() -------------------------------------------------------------------------


def test_registry_lists_every_proxy_with_its_data_needs() -> None:
    assert ALL == ["grad_norm", "jacob_cov", "macs", "naswot", "params", "snip", "synflow", "zen"]
    needs = {name: (p.uses_batch, p.uses_labels, p.needs_data) for name, p in PROXIES.items()}
    assert needs == {
        "synflow": (False, False, False), "zen": (False, False, False), "macs": (False, False, False),
        "params": (False, False, False), "naswot": (True, False, True), "jacob_cov": (True, False, True),
        "grad_norm": (True, True, True), "snip": (True, True, True),
    }
    assert PROXIES["synflow"].fn is zc.synflow and PROXIES["zen"].fn is zc.zen


def test_unknown_proxy_lists_the_allowed_names_on_one_line() -> None:
    with pytest.raises(UnknownProxyError) as info:
        score("synflw", conv_net(), SHAPE)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == (
        "unknown zero-cost proxy 'synflw'; allowed: grad_norm, jacob_cov, macs, naswot, params, snip, synflow, zen"
    )


def test_registering_a_name_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="^zero-cost proxy 'zen' is already registered$"):
        zc.register(Proxy("zen", zc.zen, uses_batch=False, uses_labels=False, accepts=frozenset()))


def test_unknown_options_are_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ValueError) as info:
        score("zen", conv_net(), SHAPE, repeat=2)
    assert str(info.value) == "zen: unknown option 'repeat'; allowed: alpha, batch_size, features_fn, repeats"
    with pytest.raises(ValueError) as info:
        score("synflow", conv_net(), SHAPE, batch_size=4)
    assert str(info.value) == "synflow: unknown option 'batch_size'; allowed: none"


def test_bad_batch_labels_and_shapes_are_named() -> None:
    net = conv_net()
    with pytest.raises(ValueError) as info:
        score("naswot", net, SHAPE, batch=torch.zeros(4, 3, 8, 9))
    assert str(info.value) == "naswot: batch has shape (4, 3, 8, 9); expected (N, 3, 8, 8)"
    with pytest.raises(ValueError) as info:
        score("grad_norm", net, SHAPE, batch=torch.zeros(4, *SHAPE), labels=torch.tensor([0, 1, 2, 10]))
    assert str(info.value) == "grad_norm: labels must lie in [0, 10), got values from 0 to 10"
    with pytest.raises(ValueError) as info:
        score("snip", net, SHAPE, num_classes=100)
    assert str(info.value) == "snip: num_classes=100 but the module outputs 10 logits"
    with pytest.raises(ValueError) as info:
        score("synflow", net, (3, 0, 8))
    assert str(info.value) == "synflow: input_shape must be positive ints such as (3, 32, 32), got (3, 0, 8)"


def test_package_does_not_import_nas() -> None:
    """proxies is a leaf package: no module of proxies.zero_cost may import nas."""
    package = Path(zc.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "nas" or n.startswith("nas.") for n in names), f"{path.name} imports {names}"


# --- invariants shared by every proxy -------------------------------------------------------------


def frozen_eval_net() -> nn.Sequential:
    """A net in eval mode with non-default BN statistics, a frozen layer, an in-place first ReLU and
    dropout (which must stay off: in train mode it would draw from the global RNG)."""
    body = seeded(lambda: conv_net(depth=2, width=4), 0)
    net = nn.Sequential(nn.ReLU(inplace=True), *body[:-1], nn.Dropout(0.5), body[-1])
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1, generator=torch.Generator().manual_seed(1))
                m.running_var.uniform_(0.5, 2, generator=torch.Generator().manual_seed(2))
                m.num_batches_tracked.fill_(7)
    net[1].weight.requires_grad_(False)
    net.eval()
    net[2].train()  # a mixed-mode module must come back mixed
    return net


@pytest.mark.parametrize("name", ALL)
def test_callers_module_batch_and_rng_are_untouched(name: str) -> None:
    net = frozen_eval_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in net.modules()]
    batch = gaussian((4, *SHAPE), 3)
    batch_copy = batch.clone()
    rng = torch.random.get_rng_state()

    value = score(name, net, SHAPE, batch=batch, labels=torch.tensor([0, 1, 2, 3]))

    assert math.isfinite(value)
    assert torch.equal(torch.random.get_rng_state(), rng)
    after = net.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) and after[k].dtype == v.dtype for k, v in before.items())
    assert [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in net.modules()] == flags
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(batch, batch_copy)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_float(name: str) -> None:
    net = seeded(conv_net, 0)
    assert score(name, net, SHAPE, seed=5) == score(name, net, SHAPE, seed=5)


@pytest.mark.parametrize("name", SEEDED)
def test_a_different_seed_draws_different_data(name: str) -> None:
    net = seeded(conv_net, 0)
    assert score(name, net, SHAPE, seed=0) != score(name, net, SHAPE, seed=1)


@pytest.mark.parametrize("bn", [True, False], ids=["bn", "no-bn"])
def test_deep_narrow_network_gives_finite_scores(bn: bool) -> None:
    """60 x (conv [+ BN] + ReLU), 12 channels.  Values that float32 cannot hold (above e^88.7) arise:
    synflow's flow reaches e^99.7, and zen's N(0, 1) weights without BN grow the feature-map
    difference to about e^117."""
    net = seeded(lambda: conv_net(depth=60, width=12, bn=bn), 0)
    values = {name: score(name, net, SHAPE, batch_size=8) if "batch_size" in PROXIES[name].options
              else score(name, net, SHAPE) for name in ALL}
    assert all(math.isfinite(v) for v in values.values()), values
    assert values["synflow"] > math.log(torch.finfo(torch.float32).max)
    if not bn:
        assert values["zen"] > math.log(torch.finfo(torch.float32).max)


# --- a real search-space network -------------------------------------------------------------------

TINY = """
name: tiny
resolution: 32
num_classes: 10
stem: {out: 8, act: relu6}
stages:
  - {stride: 2, depth: 2, width: 16, block: {op: inverted_residual, kernel: 3, expand: 2, se: true, act: hardswish}}
  - {stride: 2, depth: 1, width: 24, block: {op: sandglass, expand: 2, act: relu6}}
head: {conv: {out: 32, act: relu6}, pool: avg, dropout: 0.2}
"""


def test_every_proxy_scores_a_built_network(write_yaml) -> None:
    from nas.builder import build
    from nas.space import load_space

    net = seeded(lambda: build(load_space(write_yaml(TINY))), 0)
    shape = (3, 32, 32)
    values = {name: score(name, net, shape) for name in ALL}
    assert all(math.isfinite(v) for v in values.values()), values
    # Zen's default features: stem, blocks and the head conv, stopping at the global pool.
    head_conv = net.head[0]
    assert score("zen", net, shape) == score("zen", net, shape,
                                             features_fn=lambda m, x: m.head[0](m.blocks(m.stem(x))))
    assert head_conv.key.config.op == "conv_bn_act"
