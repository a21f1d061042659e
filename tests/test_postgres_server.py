"""The throwaway PostgreSQL server of tests and benchmarks (benchmarks/_postgres.py): a failed set-up step
says what failed in one line, and a machine that cannot start a server fails the tests that need one
(never skips them), with that line."""
from __future__ import annotations

import pytest

from benchmarks import _postgres
from roots import ROOT

pytest_plugins = ["pytester"]


def test_a_failed_setup_step_is_one_line_with_the_tools_own_words() -> None:
    with pytest.raises(_postgres.ServerError) as err:
        _postgres._run("initdb", "--no-such-option")
    assert str(err.value).startswith("initdb --no-such-option failed (1): initdb: ")
    assert "unrecognized option" in str(err.value) and "\n" not in str(err.value)


def test_no_server_fails_the_tests_that_need_one(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: _postgres.Server) -> None:
        raise _postgres.ServerError("initdb -D failed (1): initdb: error: cannot be run as root")

    monkeypatch.setattr(_postgres.Server, "init", broken)
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_needs_pg="def test_a(postgres_url):\n    pass\n\ndef test_b(postgres_url):\n    pass\n")
    result = pytester.runpytest_inprocess("-q")
    result.assert_outcomes(errors=2)  # not skipped, and not passed
    result.stdout.fnmatch_lines(["*cannot start a throwaway PostgreSQL server: initdb -D failed (1): initdb: "
                                 "error: cannot be run as root*"])
