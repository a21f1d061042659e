"""The per-unit cost cache: its sums equal fvcore on the whole model, and it traces each unit once."""
from __future__ import annotations


import pytest

import nas.cost
from nas.cost import CostModel, whole_model_counts
from nas.space import load_space, plan, project, sample
from proxies.flops import Counts

from roots import SPACES_DIR

SHIPPED = ["sandglass", "mobilenet_v3", "mobilenet_v4"]
# SE + hardswish; max-pool stem + grouped first unit; channel split + mean pool; sandglass layouts;
# uib / fused_ib and the post-pooling conv + BN head.
REFERENCES = ["mobilenet_v3_small", "shufflenet_v1_g3", "shufflenet_v2_x1_0", "mobilenext", "mobilenet_v4_conv_small"]

_spaces: dict[str, object] = {}


def space_of(name: str):
    if name not in _spaces:
        path = SPACES_DIR / f"{name}.yaml"
        _spaces[name] = load_space(path if path.exists() else SPACES_DIR / "reference" / f"{name}.yaml")
    return _spaces[name]


@pytest.fixture(scope="module")
def model() -> CostModel:
    """One cache for the module, as the search shares one across candidates and spaces."""
    return CostModel()


@pytest.fixture
def traces(monkeypatch) -> list[tuple[int, ...]]:
    """Records each fvcore trace `CostModel` makes (its input shape)."""
    calls: list[tuple[int, ...]] = []
    real = nas.cost.count_module

    def counting(module, input_shape):
        calls.append(tuple(input_shape))
        return real(module, input_shape)

    monkeypatch.setattr(nas.cost, "count_module", counting)
    return calls


def assert_same(cost, whole: Counts) -> None:
    assert (cost.params, cost.macs, cost.flops) == (whole.params, whole.macs, whole.flops)
    assert cost.by_operator() == whole.by_operator
    # The totals are the per-unit sums.
    assert cost.params == sum(u.counts.params for u in cost.units)
    assert cost.macs == sum(u.counts.macs for u in cost.units)
    assert cost.flops == sum(u.counts.flops for u in cost.units) == sum(whole.by_operator.values())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", SHIPPED)
def test_sum_of_units_equals_whole_model(model: CostModel, name: str, seed: int) -> None:
    space = space_of(name)
    arch = sample(space, seed)
    cost = model.cost(space, arch)
    assert cost.resolution == arch["res"]
    assert [u.unit for u in cost.units] == list(plan(space, arch).units)
    assert_same(cost, whole_model_counts(space, arch))


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_sum_equals_whole_model(model: CostModel, name: str) -> None:
    space = space_of(name)
    cost = model.cost(space)
    assert cost.resolution == 224
    assert_same(cost, whole_model_counts(space))


def test_mobilenet_v2_exact() -> None:
    cost = CostModel().cost(space_of("mobilenet_v2"))
    assert (cost.params, cost.macs) == (3_504_872, 300_774_272)  # REFERENCE.md
    assert cost.flops == 320_515_392
    assert cost.by_operator() == {"adaptive_avg_pool2d": 62_720, "add": 216_384, "batch_norm": 13_356_224,
                                  "conv": 299_494_272, "hardtanh": 6_105_792, "linear": 1_280_000}


def test_units_are_traced_once(traces: list) -> None:
    space = space_of("mobilenet_v3")
    model = CostModel()
    arch = dict(sample(space, 3), **{"s2.depth": 2})
    first = model.cost(space, arch)
    texts = [u.unit.text for u in first.units]
    assert len(traces) == len(set(texts)) == len(model)

    # The same arch again, and its macs_params: no trace.
    traces.clear()
    assert model.cost(space, arch) == first
    assert model.macs_params(space, arch) == (first.macs, first.params)
    assert traces == []

    # A different arch that shares all but one unit (one block's kernel): exactly one new trace.
    k = arch["s6.b0.kernel"]
    other = dict(arch, **{"s6.b0.kernel": 3 if k != 3 else 5})
    second = model.cost(space, other)
    new = set(u.unit.text for u in second.units) - set(texts)
    assert len(new) == 1
    assert len(traces) == 1 and len(model) == len(set(texts)) + 1
    assert second.units[0].counts is first.units[0].counts  # shared entries are the cached objects

    # A decision the network ignores (a block past the stage's depth) changes nothing: no trace.
    traces.clear()
    hidden = dict(arch, **{"s2.b3.kernel": 7 if arch["s2.b3.kernel"] != 7 else 3})
    assert model.cost(space, hidden) == first
    assert traces == []


def test_cache_is_shared_across_spaces(traces: list) -> None:
    """Keys are self-contained: the backbone's units are cached entries of the reference file."""
    space = space_of("mobilenet_v3")
    reference = space_of("mobilenet_v3_large")
    model = CostModel()
    ref_cost = model.cost(reference)
    traces.clear()
    arch = project(space, load_space(space.backbone))
    assert model.cost(space, arch) == ref_cost
    assert traces == []


@pytest.mark.parametrize("name", SHIPPED)
def test_macs_params_equals_cost(model: CostModel, name: str, traces: list) -> None:
    space = space_of(name)
    archs = [sample(space, seed) for seed in (0, 1, 2)]  # the shared `model` has costed these already
    fast = CostModel()
    got = [fast.macs_params(space, arch) for arch in archs]
    distinct = {u.text for arch in archs for u in plan(space, arch).units}
    assert len(traces) == len(fast) == len(distinct)  # misses filled once each
    for arch, macs_params in zip(archs, got):
        cost = model.cost(space, arch)
        assert macs_params == (cost.macs, cost.params)


def test_unit_counts_persist_and_are_reused_without_tracing(tmp_path, monkeypatch) -> None:
    import nas.cost
    from nas.cost import CostModel
    from nas.space import load_space, sample

    space = load_space("search_spaces/mobilenet_v3.yaml")
    arch = sample(space, 4)
    first = CostModel(tmp_path / "counts.json")
    expected = first.cost(space, arch)
    first.save()
    assert (tmp_path / "counts.json").is_file()

    def no_tracing(*args, **kwargs):
        raise AssertionError("a cached unit was traced again")

    monkeypatch.setattr(nas.cost, "count_module", no_tracing)
    again = CostModel(tmp_path / "counts.json").cost(space, arch)
    assert (again.params, again.macs, again.flops, again.by_operator()) == \
           (expected.params, expected.macs, expected.flops, expected.by_operator())


def test_a_damaged_count_cache_is_rebuilt(tmp_path) -> None:
    from nas.cost import CostModel
    from nas.space import load_space, sample

    (tmp_path / "counts.json").write_text("{not json")
    space = load_space("search_spaces/mobilenet_v3.yaml")
    model = CostModel(tmp_path / "counts.json")
    assert len(model) == 0
    model.macs_params(space, sample(space, 1))
    model.save()
    assert len(CostModel(tmp_path / "counts.json")) == len(model) > 0
