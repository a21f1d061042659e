"""End to end on a real PostgreSQL server: `nas search --workers 4` shares one study among four worker
processes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd

from search_helpers import TINY_SPACE, synthetic_table


def test_four_workers_share_one_study_of_exactly_200_trials(write_yaml, tmp_path: Path, postgres_url: str) -> None:
    tiny = write_yaml(TINY_SPACE, "tiny.yaml")
    lut, run = tmp_path / "lut.json", tmp_path / "run"
    synthetic_table(tiny, lut)
    done = subprocess.run([sys.executable, "-m", "nas", "search", "--space", str(tiny), "--target-latency", "0.4ms",
                           "--lut", str(lut), "--threads", "1", "--n-trials", "200", "--workers", "4", "--storage",
                           postgres_url, "--run-dir", str(run), "--no-measure", "--quiet", "--fit", "0"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    info = json.loads((run / "run.json").read_text())
    trials = optuna.load_study(study_name=info["study_name"], storage=postgres_url).get_trials()
    complete = [t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 200 and len(set(complete)) == 200
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    table = pd.read_csv(run / "trials.csv")
    assert table["worker"].nunique() == 4  # host and pid of each of the four processes
    # Each worker sampled with the others' trials in the study: when it asked its later trials, the study
    # held COMPLETE trials that other workers had run (recorded per trial as `others_complete`).
    done_trials = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    for worker in table["worker"].unique():
        own = sorted((t for t in done_trials if t.user_attrs["worker"] == worker), key=lambda t: t.number)
        assert own and own[-1].user_attrs["others_complete"] > 0, worker
    # Cooperating, not duplicating: an architecture drawn again (by the sampler itself, or by two workers)
    # takes the score the study already has instead of being scored again (`reused_score`); only two
    # workers drawing the same architecture at the same moment score it twice.
    scored = [t for t in done_trials if not t.user_attrs.get("reused_score")]
    distinct = len({t.user_attrs["arch"] for t in done_trials})
    assert distinct <= len(scored) <= distinct + 10, (len(scored), distinct)
