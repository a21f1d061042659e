"""Zero-cost proxies as search objectives: single proxies, z-scored ensembles, caching, determinism."""
from __future__ import annotations

import statistics

import pytest

from nas import api
from nas.search.objectives import Metrics, get_objective
from nas.search.proxy_objectives import ProxyObjective, seeded_model
from nas.space import load_space, plan, sample
from proxies.zero_cost import score
from search_helpers import COSTS, TINY_SPACE, synthetic_model


@pytest.fixture
def tiny(write_yaml):
    return write_yaml(TINY_SPACE, "tiny.yaml")


def test_a_proxy_objective_is_the_proxy_of_the_built_network(tiny, tmp_path) -> None:
    result = api.search(tiny, "0.4ms", run_dir=tmp_path / "run", latency=synthetic_model(tiny), cost=COSTS,
                        measure=False, objective="synflow", sampler="random", seed=2, n_trials=6)
    space = load_space(tiny)
    for t in result.outcome.study.get_trials():
        model = seeded_model(space, t.params, seed=2)
        expected = score("synflow", model, plan(space, t.params).input_shape, seed=2)
        assert t.values[0] == pytest.approx(expected, rel=1e-12)
        assert t.user_attrs["objective"] == t.values[0]


def test_ensemble_is_the_mean_of_calibrated_z_scores(tiny) -> None:
    space = load_space(tiny)
    ensemble = get_objective("naswot+zen", seed=1)
    assert isinstance(ensemble, ProxyObjective) and ensemble.names == ["naswot", "zen"]
    ensemble.calibration = 4
    calib = [ensemble.raw(space, sample(space, 1 + 7919 * (i + 1))) for i in range(4)]
    arch = sample(space, 99)
    raw = ensemble.raw(space, arch)
    expected = statistics.mean(
        (raw[n] - statistics.mean(c[n] for c in calib)) / statistics.pstdev([c[n] for c in calib])
        for n in ("naswot", "zen"))
    metrics = Metrics(macs=0, params=0, latency_ms=0.0)
    assert ensemble.score(space, arch, metrics) == pytest.approx(expected, rel=1e-9)
    # Deterministic: a fresh objective with the same seed gives the same value.
    again = get_objective("naswot+zen", seed=1)
    again.calibration = 4
    assert again.score(space, arch, metrics) == ensemble.score(space, arch, metrics)


def test_repeated_candidates_are_scored_once(tiny, tmp_path, monkeypatch) -> None:
    calls = []
    original = ProxyObjective.raw

    def counting(self, space, arch):
        calls.append(1)
        return original(self, space, arch)

    monkeypatch.setattr(ProxyObjective, "raw", counting)
    space = load_space(tiny)
    search = api.prepare_search(tiny, api.SearchSettings(target_ms=0.4, objective="zen", n_trials=1,
                                                         run_dir=tmp_path / "run"), synthetic_model(tiny), COSTS)
    arch = dict(sample(space, 3))
    first = search.score(arch)
    second = search.score(arch)
    assert first == second and len(calls) == 1


@pytest.mark.parametrize("name", ["zen+zen", "zen+", "accuracy", "zen+accuracy"])
def test_bad_objective_names(name) -> None:
    with pytest.raises(ValueError) as info:
        get_objective(name)
    assert str(info.value) == (f"--objective: unknown objective {name!r}; choose one of grad_norm, jacob_cov, macs, "
                               f"naswot, params, proxy, snip, supernet, synflow, trained, zen, or proxies joined by '+' (e.g. zen+naswot)")


def test_trained_objective_is_held_out_top1(tiny, tmp_path) -> None:
    from nas.train import trained_accuracy

    result = api.search(tiny, "0.4ms", run_dir=tmp_path / "run", latency=synthetic_model(tiny), cost=COSTS,
                        measure=False, objective="trained", data="digits", epochs=1, sampler="random", n_trials=2)
    space = load_space(tiny)
    assert result.outcome.study.user_attrs["nas.objective"] == "trained(digits,1ep)"
    for t in result.outcome.study.get_trials():
        assert 0.0 <= t.values[0] <= 1.0
        assert t.values[0] == trained_accuracy(space, t.params, "digits", 1, seed=0)


def test_trained_objective_needs_data_and_epochs() -> None:
    with pytest.raises(ValueError) as info:
        get_objective("trained", epochs=3)
    assert str(info.value) == "--objective trained needs --data digits|DIR and --epochs N (N >= 1)"


def test_registering_an_objective_twice_is_an_error() -> None:
    from nas.search.objectives import register_objective

    with pytest.raises(ValueError) as info:
        register_objective("zen", "again", lambda options: None)
    assert str(info.value) == "objective 'zen' is already registered"


def test_every_objective_comes_from_the_registry() -> None:
    from nas.search.objectives import OBJECTIVES, ObjectiveOptions
    from nas.search.trained import TrainedObjective

    assert get_objective("macs").name == "macs" and get_objective("proxy").names == ["naswot"]
    assert isinstance(get_objective("trained", data="digits", epochs=2), TrainedObjective)
    assert OBJECTIVES["macs"].proxy == "macs" and get_objective("macs+zen").names == ["macs", "zen"]
    assert OBJECTIVES["zen"].make(ObjectiveOptions(seed=4)).seed == 4
