"""What `nas search` and `nas report` print of the winner check: the winner's figures, the machine's speed,
what a plain timing reads, the caution, and a rescaled correction (from summaries as nas.report writes them)."""
from __future__ import annotations


def test_cli_says_what_a_plain_timing_reads_at_the_speeds_of_the_check(capsys) -> None:
    """The winner was measured at 20 ms at the table's level; the machine ran 0.9-1.3x the level during
    the check, so a plain timing of it reads about 18-26 ms: the CLI says so beside the prediction."""
    from types import SimpleNamespace

    from nas.cli.search import _print_outcome

    best = {"number": 7, "objective": 1e8, "predicted_latency_ms": 21.0, "measured_latency_ms": 20.0,
            "measured_raw_ms": 22.0, "measured_level_ms": 20.0, "within_guard": True}
    summary = {"n_feasible": 3, "pareto_size": 2, "best": best, "objective": "macs", "target_latency_ms": 25.0,
               "machine_speed_at_start": 1.0, "machine_speed": 1.1, "machine_speed_range": [0.9, 1.3],
               "plain_timing_range_ms": [18.0, 26.0], "files": ["summary.json"]}  # as nas.report writes them
    outcome = SimpleNamespace(stats=SimpleNamespace(new=5, total=5), summary=summary, interrupted=False,
                              elapsed_s=1.0, run_dir="run")
    _print_outcome(outcome)
    out = capsys.readouterr().out
    assert ("as timed: the machine ran 0.90-1.30x the level during the check; a plain timing of the winner reads "
            "about 18.0-26.0 ms at those speeds") in out
    assert ("  in a process that keeps freed memory, as every timing here; on Linux, start Python with "
            "MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 to time it so") in out
    del summary["machine_speed_range"], summary["plain_timing_range_ms"]  # a run folder from before the range
    _print_outcome(outcome)
    assert "plain timing" not in capsys.readouterr().out


def test_cli_says_when_the_machine_changed_speed_since_the_search_started(capsys) -> None:
    from types import SimpleNamespace

    from nas.cli.search import _print_outcome

    best = {"number": 7, "objective": 1e8, "predicted_latency_ms": 40.0, "measured_latency_ms": 22.0,
            "measured_raw_ms": 22.3, "measured_level_ms": 40.0, "within_guard": True}
    summary = {"n_feasible": 3, "pareto_size": 2, "best": best, "objective": "macs", "target_latency_ms": 25.0,
               "machine_speed_at_start": 0.9, "machine_speed": 0.5, "files": ["summary.json"]}
    outcome = SimpleNamespace(stats=SimpleNamespace(new=5, total=5), summary=summary, interrupted=False,
                              elapsed_s=1.0, run_dir="run")
    _print_outcome(outcome)
    out = capsys.readouterr().out
    assert "speed: predictions at 0.90x the table's level (the machine at the start), measurements at 0.50x" in out
    assert ("note: the machine ran 1.80x faster during the winner check than when the search started: the winner "
            "was chosen by what it measured then, not by its prediction") in out
    summary["machine_speed"] = 1.2
    _print_outcome(outcome)
    assert "note: the machine ran 1.33x slower during the winner check" in capsys.readouterr().out
    summary["machine_speed"] = 0.85  # within the machine's own wobble: no note
    _print_outcome(outcome)
    assert "during the winner check than" not in capsys.readouterr().out


def test_nas_report_prints_the_winner_and_its_caution(monkeypatch, capsys) -> None:
    """`nas report RUN_DIR` measures the winner again: it prints the winner as `nas search` does, with the
    caution when the machine moved too much during the check."""
    from nas import api
    from nas.cli import main

    best = {"number": 7, "objective": 1e8, "predicted_latency_ms": 21.0, "measured_latency_ms": 22.9,
            "measured_raw_ms": 22.3, "measured_level_ms": 60.3, "within_guard": True}
    summary = {"n_trials": 9, "n_feasible": 3, "pareto_size": 2, "best": best, "objective": "macs",
               "target_latency_ms": 25.0, "machine_speed_at_start": 0.44, "machine_speed": 0.38,
               "machine_speed_range": [0.34, 0.68], "winner_caution": "a plain timing of the winner reads up to 41.0 ms",
               "files": ["summary.json"]}
    monkeypatch.setattr(api, "report", lambda run_dir, measure=True: {"summary": summary})
    assert main(["report", "run"]) == 0
    out = capsys.readouterr().out
    assert "winner: trial 7, " in out and "measured 22.90 ms (22.30 ms as timed) (target 25 ms)" in out
    assert "predicted 21.00 ms, measured" in out  # a folder written before predicted_at_check_ms
    best["predicted_at_check_ms"] = 18.14
    assert main(["report", "run"]) == 0
    assert "predicted 21.00 ms (18.14 ms at the check's speed), measured 22.90 ms" in capsys.readouterr().out
    assert "caution: a plain timing of the winner reads up to 41.0 ms" in out and "wrote run: summary.json" in out


def test_cli_says_when_the_winner_check_rescaled_the_tables_correction(capsys) -> None:
    from types import SimpleNamespace

    from nas.cli.search import _print_outcome

    best = {"number": 7, "objective": 1e8, "predicted_latency_ms": 21.0, "measured_latency_ms": 23.5,
            "within_guard": True, "searched_latency_ms": 19.5}
    summary = {"n_feasible": 3, "pareto_size": 2, "best": best, "objective": "macs", "target_latency_ms": 25.0,
               "files": ["summary.json"], "correction_recalibrated": {
                   "factor": 1.131, "networks": 6, "scale": 1.02, "per_unit_ms": 0.0, "offset_ms": 2.1,
                   "table": "/cache/t.json"}}
    outcome = SimpleNamespace(stats=SimpleNamespace(new=5, total=5), summary=summary, interrupted=False,
                              elapsed_s=1.0, run_dir="run")
    _print_outcome(outcome)
    out = capsys.readouterr().out
    assert ("note: the winner check measured its 6 networks 13% over the table's prediction (median, at the table's "
            "level): the table's correction is rescaled by 1.131 for the next search (/cache/t.json)"
            ) in out
    assert "predicted 21.00 ms (19.50 ms when the search predicted it; the table changed since), measured 23.50 ms" in out
    del summary["correction_recalibrated"]
    _print_outcome(outcome)
    assert "rescaled" not in capsys.readouterr().out
