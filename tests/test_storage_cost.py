"""The storage cost benchmark runs end to end in quick mode, without PostgreSQL and on the session's throwaway
server (conftest's postgres_url), and writes every figure it prints."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import _common, storage_cost


def test_quick_run_writes_write_and_read_costs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "storage_cost.json"
    assert storage_cost.main(["--quick", "--json", str(out), "--folder", str(tmp_path)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures) == {"space", "params_per_trial", "trials", "repeats", "batch", "optuna", "postgres",
                            "machine", "write", "read", "quick"}
    assert figures["quick"] is True and figures["postgres"] is None and figures["trials"] == 20
    assert set(figures["write"]) == {f"{b}/{p}" for b in ("memory", "sqlite", "journal")
                                     for p in storage_cost.PATHS[b]}
    for row in figures["write"].values():
        assert set(row) == {"backend", "path", "repeat_ms_per_trial", "ms_per_trial"}
        assert len(row["repeat_ms_per_trial"]) == 1 and row["ms_per_trial"] > 0
    assert set(figures["read"]) == {f"{b}/{n}" for b in ("memory", "sqlite", "journal") for n in (20, 50)}
    assert all(set(row) == {"backend", "trials", "cold_ms", "warm_ms"} for row in figures["read"].values())
    printed = capsys.readouterr().out
    assert "2-core VM" in printed and printed.count(_common.QUICK_NOTE) == 2
    assert list(tmp_path.iterdir()) == [out]  # the storage files went with their temp folder


def test_quick_run_on_the_sessions_postgres_server(tmp_path: Path, postgres_url: str) -> None:
    out = tmp_path / "storage_cost.json"
    assert storage_cost.main(["--quick", "--json", str(out), "--folder", str(tmp_path), "--postgres",
                              postgres_url]) == 0
    figures = json.loads(out.read_text())
    assert {k for k in figures["write"] if k.startswith("postgres/")} == {
        f"postgres/{p}" for p in storage_cost.PATHS["postgres"]}
    assert all(figures["write"][f"postgres/{p}"]["ms_per_trial"] > 0 for p in storage_cost.PATHS["postgres"])
    assert {"postgres/20", "postgres/50"} <= set(figures["read"])
