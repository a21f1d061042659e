"""The supernet runs every subnet exactly as the static operators of `nas.ops` do with the same weights
(every stage op, kernel, expand, SE, width and depth choice, eval and train mode), cuts the weights it
says it cuts, shares what its roles share, and sends gradients only into the slices a subnet used.
Refusals are in test_supernet_refusals.py."""
from __future__ import annotations

from typing import Any, Mapping

import pytest
import torch

from nas.builder import build
from nas.ops import op_names
from nas.space import decisions, encode, load_space, plan, sample
from nas.supernet import Supernet

from roots import ROOT
from subnet_helpers import TOL, block, extremes, inputs, space_yaml

# op: (stem width, stages). Each space gives its op a choice for every field the op reads that changes its
# weights (kernel, expand, se, se_ratio, groups, start/mid kernel, layer scale), two widths and two depths,
# at a widening strided stage and at a stride-1 stage. Every stage op needs a row (the test below says so).
OP_SPACES: dict[str, tuple[int, list[dict[str, Any]]]] = {
    "conv_bn_act": (16, [
        {"stride": 2, "depth": [1, 2], "width": [16, 24], "block": block("conv_bn_act", kernel=[1, 3, 5])},
        {"stride": 1, "depth": [1, 2], "width": [24, 32], "block": block("conv_bn_act", kernel=[3, 5], act="relu6")}]),
    "dwsep": (16, [
        {"stride": 2, "depth": [1, 2], "width": [16, 24], "block": block("dwsep", kernel=[3, 5, 7], se=[False, True])},
        {"stride": 1, "depth": [1, 2], "width": [24, 32],
         "block": block("dwsep", kernel=[3, 5], se=[False, True], se_ratio=[0.25, 0.5])}]),
    "fused_ib": (16, [
        {"stride": 2, "depth": [1, 2], "width": [16, 24],
         "block": block("fused_ib", kernel=[3, 5], expand=[2, 4], se=[False, True])},
        {"stride": 1, "depth": [1, 2], "width": [24, 32], "block": block("fused_ib", kernel=[3, 5], expand=[1, 3])},
        {"stride": 1, "depth": [1, 2], "width": [32, 40], "block": block("fused_ib", hidden=[48, 64])}]),
    "inverted_residual": (16, [
        {"stride": 2, "depth": [1, 2], "width": [16, 24],
         "block": block("inverted_residual", kernel=[3, 5, 7], expand=[1, 3, 6], se=[False, True])},
        {"stride": 1, "depth": [1, 2], "width": [24, 32],
         "block": block("inverted_residual", kernel=[3, 5], expand=[2, 4], se=[False, True], se_gate="sigmoid")}]),
    "sandglass": (16, [
        {"stride": 2, "depth": [1, 2], "width": [16, 24],
         "block": block("sandglass", kernel=[3, 5, 7], expand=[2, 3, 4], se=[False, True])},
        {"stride": 1, "depth": [1, 2], "width": [24, 32],
         "block": block("sandglass", kernel=[3, 5], expand=[2, 4], identity_mult=0.5, se=[False, True])}]),
    "shuffle_v1": (24, [
        {"stride": 2, "depth": [1, 2], "width": [48, 72], "block": block("shuffle_v1", groups=[2, 3], kernel=[3, 5])}]),
    "shuffle_v2": (16, [
        {"stride": 2, "depth": [1, 2], "width": [32, 48], "block": block("shuffle_v2", kernel=[3, 5])},
        {"stride": 2, "depth": [1, 2], "width": [64, 96], "block": block("shuffle_v2", kernel=[3, 5], act="silu")}]),
    "squeeze_excite": (16, [
        {"stride": 1, "depth": [1, 2], "width": 16,
         "block": block("squeeze_excite", se_ratio=[0.25, 0.5], se_gate=["sigmoid", "hardsigmoid"])}]),
    "uib": (16, [
        {"stride": 2, "depth": [1, 2], "width": [16, 24],
         "block": block("uib", start_kernel=[0, 3], mid_kernel=[3, 5], expand=[2, 4], se=[False, True])},
        {"stride": 1, "depth": [1, 2], "width": [24, 32],
         "block": block("uib", start_kernel=[0, 3, 5], mid_kernel=[0, 3], expand=[1, 2], layer_scale=[0.0, 0.5])}]),
}


# Heads other than the plain pool + classifier, whose input width follows the last stage's width choice.
HEADS: dict[str, dict[str, Any]] = {
    "inverted_residual": {"conv": {"out": 48, "act": "hardswish"}, "pool": "avg",
                          "hidden": {"out": 32, "act": "relu", "norm": True}},
    "uib": {"conv": {"out": 40}, "pool": "mean", "hidden": {"out": 24}, "bias": False},
}


def op_space(op: str, tmp_path) -> Any:
    stem, stages = OP_SPACES[op]
    path = tmp_path / f"{op}.yaml"
    head = {"pool": "avg", **HEADS.get(op, {}), "dropout": 0.2}
    path.write_text(space_yaml(f"elastic-{op}", stem, stages, resolution=[12, 16], head=head), encoding="utf-8")
    return load_space(path)


def archs(space, seeds: range = range(4)) -> list[Mapping[str, Any]]:
    return extremes(space) + [sample(space, seed) for seed in seeds]


def static_copy(supernet: Supernet, arch) -> torch.nn.Module:
    """`nas.builder.build(space, arch)` loaded with a copy of the supernet's weights for `arch`."""
    net = build(supernet.space, arch, init=False)
    net.load_state_dict({k: v.detach().clone() for k, v in supernet.weights(arch).items()}, strict=True)
    return net.train(supernet.training)


def bank_tensors(supernet: Supernet) -> dict[int, tuple[str, torch.Tensor]]:
    """Every bank tensor by the address of its storage: which bank tensor a cut view comes from."""
    named = [*supernet.named_parameters(), *supernet.named_buffers()]
    return {t.untyped_storage().data_ptr(): (name, t) for name, t in named}


def used_masks(supernet: Supernet, arch) -> dict[str, torch.Tensor]:
    """For each bank tensor `arch` uses, a mask of the elements its cuts cover. Bank tensors are
    contiguous from offset 0, so a view's strides and offset locate it in a mask of the same shape."""
    banks, masks = bank_tensors(supernet), {}
    for view in supernet.weights(arch).values():
        name, whole = banks[view.untyped_storage().data_ptr()]
        assert whole.is_contiguous() and whole.storage_offset() == 0
        mask = masks.setdefault(name, torch.zeros(whole.shape, dtype=torch.bool))
        mask.as_strided(view.shape, view.stride(), view.storage_offset()).fill_(True)
    return masks


def unit_views(weights: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def where(view: torch.Tensor) -> tuple:
    """Identity of a view: its storage and where in it."""
    return view.untyped_storage().data_ptr(), view.storage_offset(), tuple(view.shape), view.stride()


# ---- every op: the supernet computes what the static op computes ----

def test_every_stage_op_has_a_space_here() -> None:
    missing = sorted(set(op_names(stage_only=True)) - set(OP_SPACES))
    assert not missing, f"stage ops without an elastic test space in OP_SPACES: {missing}"


@pytest.mark.parametrize("op", sorted(OP_SPACES))
def test_subnets_equal_static_ops_in_eval_mode(op: str, tmp_path) -> None:
    space = op_space(op, tmp_path)
    torch.manual_seed(0)
    supernet = Supernet(space).eval()
    seen = set()
    for arch in archs(space):
        seen.add(tuple(u.key for u in plan(space, arch).units))
        x = inputs(space, arch)
        with torch.no_grad():
            got, want = supernet(x, arch), static_copy(supernet, arch)(x)
        assert got.shape == want.shape == (4, 5)
        assert (got - want).abs().max().item() <= TOL, encode(space, arch)
    assert len(seen) >= 4  # the archs are different networks


@pytest.mark.parametrize("op", sorted(OP_SPACES))
def test_subnets_equal_static_ops_in_train_mode_and_write_back_running_stats(op: str, tmp_path) -> None:
    space = op_space(op, tmp_path)
    torch.manual_seed(0)
    supernet = Supernet(space).train()
    for arch in archs(space, range(2)):
        static = static_copy(supernet, arch)
        banks_before = {name: t.clone() for name, t in supernet.named_buffers()}
        before = {k: v.clone() for k, v in supernet.weights(arch).items()}
        x = inputs(space, arch, seed=1)
        with torch.no_grad():  # the same dropout mask: running a subnet draws nothing else from the generator
            torch.manual_seed(1)
            got = supernet(x, arch)
            torch.manual_seed(1)
            want = static(x)
        assert (got - want).abs().max().item() <= TOL
        after, static_state = supernet.weights(arch), static.state_dict()
        stats = [k for k in static_state if "running" in k or "num_batches" in k]
        assert stats  # every space has a batch norm, in the stem at least
        for k in stats:  # the supernet's cut statistics moved as the static network's did
            assert not torch.equal(after[k], before[k]), k
            assert (after[k].double() - static_state[k].double()).abs().max().item() <= TOL, k
        masks = used_masks(supernet, arch)
        for name, now in supernet.named_buffers():  # and nothing outside the cuts moved
            change = now.double() - banks_before[name].double()
            assert not change[~masks.get(name, torch.zeros(now.shape, dtype=torch.bool))].any(), name


def test_running_a_new_subnet_leaves_the_random_generator_alone(tmp_path) -> None:
    """Its skeleton is built on the meta device: no initial values drawn, so a run resumed with a cold
    cache draws the same dropout masks and samples as the run it continues."""
    space = op_space("inverted_residual", tmp_path)
    supernet = Supernet(space).eval()
    for arch in archs(space, range(2)):
        state = torch.random.get_rng_state()
        with torch.no_grad():
            supernet(inputs(space, arch), arch)
        supernet.subnet(arch)
        assert torch.equal(torch.random.get_rng_state(), state)


# ---- the cuts ----

@pytest.fixture(scope="module")
def sandglass32() -> Supernet:
    """The benchmark space's supernet (the one test that builds a shipped space), in eval mode."""
    torch.manual_seed(0)
    return Supernet(load_space(ROOT / "search_spaces" / "sandglass32.yaml")).eval()


def sg32_arch(supernet: Supernet, **values: Any) -> dict[str, Any]:
    """The first choice everywhere, inverted residuals with kernel 7, expand 6, SE off; then `values`."""
    arch = {d.name: d.choices[0] for d in decisions(supernet.space)}
    for name in arch:  # block decisions are named "s2.b0.kernel"
        default = {"op": "inverted_residual", "kernel": 7, "expand": 6, "se": False}.get(name.rsplit(".", 1)[-1])
        if default is not None and name.count(".") == 2:
            arch[name] = default
    return {**arch, **values}


def block_number(net_plan, stage: str, index: int) -> int:
    """Where block `index` of `stage` sits in the static network's `blocks`."""
    blocks = [(u.stage, u.index) for u in net_plan.units if u.stage not in ("stem", "head")]
    return blocks.index((stage, index))


def modules_of(supernet: Supernet, arch, prefix: str) -> dict[str, torch.nn.Module]:
    net = build(supernet.space, arch, init=False)
    return dict(net.get_submodule(prefix.rstrip(".")).named_modules())


def test_sandglass32_subnets_equal_their_static_networks(sandglass32: Supernet) -> None:
    space = sandglass32.space
    assert sum(p.numel() for p in sandglass32.parameters()) > sum(
        p.numel() for p in build(space, extremes(space)[-1], init=False).parameters())
    for arch in [sg32_arch(sandglass32), *archs(space, range(3))]:
        x = inputs(space, arch, batch=2)
        with torch.no_grad():
            want = static_copy(sandglass32, arch)(x)
            assert (sandglass32(x, arch) - want).abs().max().item() <= TOL
            assert (sandglass32.subnet(arch)(x) - want).abs().max().item() <= TOL


def test_a_smaller_kernel_is_the_centre_of_the_largest(sandglass32: Supernet) -> None:
    big = sandglass32.weights(sg32_arch(sandglass32, **{"s1.b0.kernel": 7}))
    small = sandglass32.weights(sg32_arch(sandglass32, **{"s1.b0.kernel": 3}))
    # inverted residual at blocks.0: block.0 expand, block.1 depthwise, block.2 projection
    dw7, dw3 = big["blocks.0.block.1.0.weight"], small["blocks.0.block.1.0.weight"]
    assert dw7.shape[-2:] == (7, 7) and dw3.shape[-2:] == (3, 3)
    assert torch.equal(dw3, dw7[:, :, 2:5, 2:5])
    assert dw3.untyped_storage().data_ptr() == dw7.untyped_storage().data_ptr()
    for name in ("blocks.0.block.0.0.weight", "blocks.0.block.2.0.weight"):  # the rest is the same tensor
        assert where(big[name]) == where(small[name])


def test_a_smaller_expand_is_the_first_channels(sandglass32: Supernet) -> None:
    wide = sandglass32.weights(sg32_arch(sandglass32, **{"s1.b0.expand": 6}))
    narrow = sandglass32.weights(sg32_arch(sandglass32, **{"s1.b0.expand": 2}))
    hidden = narrow["blocks.0.block.0.0.weight"].shape[0]
    assert hidden == 2 * 16 and wide["blocks.0.block.0.0.weight"].shape[0] == 6 * 16
    expand_w, expand_n = wide["blocks.0.block.0.0.weight"], narrow["blocks.0.block.0.0.weight"]
    project_w, project_n = wide["blocks.0.block.2.0.weight"], narrow["blocks.0.block.2.0.weight"]
    assert where(expand_n) == where(expand_w[:hidden])  # rows of the expand conv
    assert where(project_n) == where(project_w[:, :hidden])  # columns of the projection
    assert where(narrow["blocks.0.block.1.0.weight"]) == where(wide["blocks.0.block.1.0.weight"][:hidden])
    assert where(narrow["blocks.0.block.0.1.running_mean"]) == where(wide["blocks.0.block.0.1.running_mean"][:hidden])


def test_se_on_and_off_share_every_other_weight(sandglass32: Supernet) -> None:
    off = unit_views(sandglass32.weights(sg32_arch(sandglass32, **{"s1.b0.se": False})), "blocks.0.")
    on = unit_views(sandglass32.weights(sg32_arch(sandglass32, **{"s1.b0.se": True})), "blocks.0.")
    se = {k for k in on if ".fc1." in k or ".fc2." in k}
    assert len(se) == 4 and len(on) == len(off) + 4
    assert {where(v) for v in off.values()} == {where(v) for k, v in on.items() if k not in se}
    # the same storage, so a change made through one is seen by the other
    before = on["block.3.0.weight"].clone()
    with torch.no_grad():
        off["block.2.0.weight"].add_(1.0)
    try:
        assert torch.equal(on["block.3.0.weight"], before + 1.0)
    finally:
        with torch.no_grad():
            off["block.2.0.weight"].sub_(1.0)


def test_depth_k_uses_the_first_k_blocks_of_the_stage(sandglass32: Supernet) -> None:
    deep = sandglass32.plan(sg32_arch(sandglass32, **{"s3.depth": 3}))
    shallow = sandglass32.plan(sg32_arch(sandglass32, **{"s3.depth": 2}))
    s3_deep = [block_number(deep, "s3", j) for j in range(3)]
    deep_w = sandglass32.weights(None, deep)
    shallow_w = sandglass32.weights(None, shallow)
    for i in s3_deep[:2]:
        a, b = unit_views(deep_w, f"blocks.{i}."), unit_views(shallow_w, f"blocks.{i}.")
        assert a.keys() == b.keys() and all(where(a[k]) == where(b[k]) for k in a)
    third = {v.untyped_storage().data_ptr() for v in unit_views(deep_w, f"blocks.{s3_deep[2]}.").values()}
    assert not third & {v.untyped_storage().data_ptr() for v in shallow_w.values()}


def test_a_narrower_width_is_the_first_output_channels(sandglass32: Supernet) -> None:
    wide = sandglass32.weights(sg32_arch(sandglass32, **{"s1.width": 24}))
    narrow = sandglass32.weights(sg32_arch(sandglass32, **{"s1.width": 16}))
    w, n = wide["blocks.0.block.2.0.weight"], narrow["blocks.0.block.2.0.weight"]
    assert w.shape[0] == 24 and n.shape[0] == 16
    assert where(n) == where(w[:16])
    # the next block reads the first 16 input channels of its expand conv (whose hidden width follows)
    w, n = wide["blocks.1.block.0.0.weight"], narrow["blocks.1.block.0.0.weight"]
    assert n.shape[:2] == (6 * 16, 16) and w.shape[:2] == (6 * 24, 24)
    assert where(n) == where(w[:6 * 16, :16])


# ---- what is shared and what is not ----

def storages(weights: Mapping[str, torch.Tensor], prefix: str) -> set[int]:
    return {v.untyped_storage().data_ptr() for v in unit_views(weights, prefix).values()}


def test_sandglass_t2_keeps_its_own_first_conv_where_its_layout_differs(sandglass32: Supernet) -> None:
    # s1.b0 widens 16 -> 24 at stride 2: t == 2 has the full layout (dw, 1x1, 1x1, dw), t == 4 drops the first dw
    t2 = sg32_arch(sandglass32, **{"s1.b0.op": "sandglass", "s1.b0.expand": 2, "s1.width": 24})
    t4 = {**t2, "s1.b0.expand": 4}
    m2, m4 = modules_of(sandglass32, t2, "blocks.0"), modules_of(sandglass32, t4, "blocks.0")
    assert m2["conv.1.0"].kernel_size == (1, 1) and m4["conv.0.0"].kernel_size == (1, 1)  # the first 1x1 conv
    w2, w4 = sandglass32.weights(t2), sandglass32.weights(t4)
    assert not storages(w2, "blocks.0.conv.1.") & storages(w4, "blocks.0.conv.0.")
    assert not storages(w2, "blocks.0.") & storages(w4, "blocks.0.")
    # where the layout is the same (s4.b1: equal widths, stride 1), t == 2 and t == 4 share everything
    u2 = sg32_arch(sandglass32, **{"s4.depth": 2, "s4.b1.op": "sandglass", "s4.b1.expand": 2})
    u4 = {**u2, "s4.b1.expand": 4}
    index = block_number(sandglass32.plan(u2), "s4", 1)
    assert storages(sandglass32.weights(u2), f"blocks.{index}.") == storages(sandglass32.weights(u4), f"blocks.{index}.")


def test_sandglass_and_inverted_residual_never_share(sandglass32: Supernet) -> None:
    ir = sandglass32.weights(sg32_arch(sandglass32))
    sg = sandglass32.weights(sg32_arch(sandglass32, **{"s1.b0.op": "sandglass"}))
    assert not storages(ir, "blocks.0.") & storages(sg, "blocks.0.")


@pytest.mark.parametrize("op", ["shuffle_v1", "shuffle_v2"])
def test_shuffle_units_keep_one_whole_tensor_per_shape(op: str, tmp_path) -> None:
    space = op_space(op, tmp_path)
    supernet = Supernet(space).eval()
    first, last = extremes(space)
    narrow = unit_views(supernet.weights({**last, "s1.width": first["s1.width"]}), "blocks.0.")
    wide = unit_views(supernet.weights(last), "blocks.0.")
    assert narrow.keys() == wide.keys()
    resized = [k for k in narrow if narrow[k].shape != wide[k].shape]
    assert len(resized) >= 10
    for k in narrow:  # a tensor whose shape follows the width is its own; one that does not is shared
        same = narrow[k].untyped_storage().data_ptr() == wide[k].untyped_storage().data_ptr()
        assert same == (k not in resized), k
    for view in [*narrow.values(), *wide.values()]:  # nothing is cut: each is a whole bank tensor
        assert view.storage_offset() == 0 and view.untyped_storage().nbytes() == view.numel() * view.element_size()


# ---- gradients ----

@pytest.mark.parametrize("op", ["inverted_residual", "uib"])
def test_gradients_reach_exactly_the_slices_used(op: str, tmp_path) -> None:
    space = op_space(op, tmp_path)
    torch.manual_seed(0)
    supernet = Supernet(space).train()
    arch = sample(space, 3)
    static = static_copy(supernet, arch)
    x = inputs(space, arch)
    torch.manual_seed(2)
    supernet(x, arch).square().sum().backward()
    torch.manual_seed(2)
    static(x).square().sum().backward()
    masks, views = used_masks(supernet, arch), supernet.weights(arch)
    static_grads = {k: p.grad for k, p in static.named_parameters()}
    assert any(p.grad is None for p in supernet.parameters())  # the space has weights this arch does not use
    for name, p in supernet.named_parameters():
        if name not in masks:
            assert p.grad is None, name
            continue
        assert not p.grad[~masks[name]].any(), name
    banks = bank_tensors(supernet)
    for k, grad in static_grads.items():
        view = views[k]
        _, whole = banks[view.untyped_storage().data_ptr()]
        cut = whole.grad.as_strided(view.shape, view.stride(), view.storage_offset())
        assert (cut - grad).abs().max().item() <= TOL, k
