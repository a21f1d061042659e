"""`--objective supernet`: each trial scores what SubnetEvaluator gives its architecture, the run folder
gets the winner's weights, and a missing or foreign checkpoint is refused before the study opens."""
from __future__ import annotations

import json

import pytest
import torch

from nas import api
from nas.search.objectives import get_objective
from nas.space import load_space
from nas.supernet import Supernet, SubnetEvaluator, load_supernet, save_checkpoint

from search_helpers import COSTS, synthetic_model
from subnet_helpers import TINY_SUPERNET_SPACE


@pytest.fixture(scope="module")
def evaluator(files):
    space_file, checkpoint = files
    return SubnetEvaluator(load_supernet(checkpoint, load_space(space_file))[0], "digits")


def _search(files, run_dir, metric="top1", n_trials=10):
    space_file, checkpoint = files
    return api.search(space_file, "1ms", run_dir=run_dir, latency=synthetic_model(space_file), cost=COSTS,
                      measure=False, objective="supernet", supernet=str(checkpoint), supernet_metric=metric,
                      sampler="random", seed=3, n_trials=n_trials)


def test_a_supernet_search_scores_trials_as_the_evaluator_does(files, evaluator, tmp_path) -> None:
    result = _search(files, tmp_path / "run")
    trials = result.outcome.study.get_trials()
    assert len(trials) == 10
    for t in trials:
        assert t.values[0] == evaluator.score(t.params).top1
    assert result.outcome.study.user_attrs["nas.objective"].startswith("supernet(top1,digits,")
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert {"best.yaml", "best_model.py", "best_weights.pt"} <= set(summary["files"])
    best = trials[summary["best"]["number"]].params
    state = torch.load(run / "best_weights.pt", weights_only=True)
    expected = evaluator.recalibrated(best).state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)
    info = json.loads((run / "run.json").read_text())
    assert (info["objective_option"], info["supernet"], info["supernet_metric"]) == \
        ("supernet", str(files[1].resolve()), "top1")

    (run / "best_weights.pt").unlink()  # `nas report` rebuilds it from run.json
    api.report(run, measure=False)
    again = torch.load(run / "best_weights.pt", weights_only=True)
    assert all(torch.equal(again[k], state[k]) for k in state)


def test_the_log_loss_metric_maximises_its_negative(files, evaluator, tmp_path) -> None:
    result = _search(files, tmp_path / "run", "log_loss", n_trials=4)
    for t in result.outcome.study.get_trials():
        assert t.values[0] == -evaluator.score(t.params).log_loss


def test_a_supernet_objective_needs_a_checkpoint_of_the_space(files, tmp_path) -> None:
    space_file, _ = files
    with pytest.raises(ValueError) as info:
        get_objective("supernet")
    assert str(info.value) == "--objective supernet needs --supernet SUPERNET.pt (from `nas supernet train`)"
    with pytest.raises(ValueError) as info:
        get_objective("supernet", supernet=str(tmp_path / "none.pt"))
    assert str(info.value) == f"{tmp_path / 'none.pt'}: no such supernet checkpoint"

    other = tmp_path / "other.yaml"
    other.write_text(TINY_SUPERNET_SPACE.replace("width: [16, 24]", "width: [16, 32]"))
    foreign = tmp_path / "foreign.pt"
    save_checkpoint(foreign, Supernet(load_space(other)))
    with pytest.raises(ValueError) as info:
        api.prepare_search(space_file, api.SearchSettings(target_ms=1.0, objective="supernet", supernet=str(foreign),
                                                          run_dir=tmp_path / "run"), synthetic_model(space_file), COSTS)
    assert str(info.value).startswith(f"{foreign}: made for space 'tinysuper' ({other}, fingerprint ")
    assert not (tmp_path / "run").exists()


def test_nas_search_without_a_checkpoint_exits_2(files, tmp_path, capsys) -> None:
    from nas.cli import main

    space_file, _ = files
    code = main(["search", "--space", str(space_file), "--target-latency", "1ms", "--objective", "supernet",
                 "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert code == 2 and not (tmp_path / "run").exists()
    assert capsys.readouterr().err == \
        "error: --objective supernet needs --supernet SUPERNET.pt (from `nas supernet train`)\n"


def test_shared_workers_build_the_same_supernet_objective(files, evaluator, tmp_path, capsys) -> None:
    """`nas search --workers 2` with the supernet objective: each worker process rebuilds the objective from
    run.json (its --objective name, checkpoint and metric) and scores as the evaluator does."""
    import optuna

    from nas.cli import main
    from nas.search.storage import storage_for
    from search_helpers import synthetic_table

    space_file, checkpoint = files
    lut, run = tmp_path / "lut.json", tmp_path / "run"
    synthetic_table(space_file, lut)
    assert main(["search", "--space", str(space_file), "--target-latency", "1ms", "--lut", str(lut), "--threads", "1",
                 "--run-dir", str(run), "--no-measure", "--quiet", "--fit", "0", "--objective", "supernet",
                 "--supernet", str(checkpoint), "--supernet-metric", "log_loss", "--workers", "2",
                 "--n-trials", "6"]) == 0, capsys.readouterr().err
    info = json.loads((run / "run.json").read_text())
    study = optuna.load_study(study_name=info["study_name"], storage=storage_for(info["storage"]))
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 6 and len({t.user_attrs["worker"] for t in done}) >= 1
    for t in done:
        assert t.values[0] == pytest.approx(-evaluator.score(t.params).log_loss, rel=1e-5)
    assert (run / "best_weights.pt").is_file()
