"""proxies.latency.table: round trip, atomic save, strict loading of damaged files, and the journal."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from proxies.latency import (Correction, DeviceProfile, Entry, LatencyError, LatencyTable, ProfileMismatchError,
                             TableError)
from proxies.latency.table import _checksum, journal_path

PROFILE = DeviceProfile(backend="torch", device="Test CPU 3000", threads=4, batch_size=1,
                        torch_version="2.13.0+cpu")
A = Entry(ms=1.25, spread_ms=0.05, runs=15, rounds=1)
B = Entry(ms=0.5, spread_ms=0.01, runs=30, rounds=2)
C = Entry(ms=2.0, spread_ms=0.25, runs=12, rounds=4)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A saved table with entries 'b' and 'a' and a correction."""
    table = LatencyTable.create(PROFILE, tmp_path / "lut.json")
    table.add("b", B)
    table.add("a", A)
    table.correction = Correction(scale=1.1, offset_ms=-0.2, n=12, mape=0.04)
    table.save()
    return tmp_path / "lut.json"


def rewrite(path: Path, edit) -> None:
    """Load the JSON document, let `edit` change it in place, and write it back (checksum untouched)."""
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=1))


def load_error(path: Path, **kwargs) -> str:
    with pytest.raises(TableError) as info:
        LatencyTable.load(path, **kwargs)
    return str(info.value)


# --- in memory and round trip ---------------------------------------------------------------------


def test_round_trip(saved: Path):
    table = LatencyTable.load(saved, expect=PROFILE)
    assert table.profile == PROFILE
    assert table.entries == {"a": A, "b": B}
    assert table.correction == Correction(scale=1.1, offset_ms=-0.2, n=12, mape=0.04)
    assert table.path == saved and table.journal_skipped == 0
    assert len(table) == 2 and "a" in table and "z" not in table
    assert table.get("b") == B and table.get("z") is None


def test_file_is_readable_json_with_sorted_keys(saved: Path):
    text = saved.read_text()
    assert text.startswith('{\n "format": "nas-latency-table",\n "version": 3,\n "profile": {\n')
    doc = json.loads(text)
    assert list(doc) == ["format", "version", "profile", "correction", "reference", "network_reference", "entries", "checksum"]
    assert list(doc["entries"]) == ["a", "b"]
    assert doc["entries"]["a"] == {"ms": 1.25, "spread_ms": 0.05, "runs": 15, "rounds": 1}
    assert len(doc["checksum"]) == 64


def test_add_validates_and_replaces(tmp_path: Path):
    table = LatencyTable(PROFILE)
    table.add("k", A)
    table.add("k", B)
    assert table.get("k") == B and len(table) == 1
    with pytest.raises(LatencyError, match="^table keys must be non-empty strings other than '@reference' and '@network_reference', got ''$"):
        table.add("", A)
    with pytest.raises(LatencyError, match="'@network_reference', got '@reference'$"):
        table.add("@reference", A)  # the journal's line for the table's level
    with pytest.raises(LatencyError, match="^table entries must be Entry, got dict$"):
        table.add("k", {"ms": 1.0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^ms: -1 is negative$"):
        Entry(ms=-1, spread_ms=0.0, runs=1, rounds=1)
    with pytest.raises(LatencyError, match=r"^this table has no path; call save\(path\)$"):
        table.save()


def test_create_refuses_to_shadow_an_existing_table(saved: Path):
    with pytest.raises(LatencyError) as info:
        LatencyTable.create(PROFILE, saved)
    assert str(info.value) == f"{saved}: already exists; open it with LatencyTable.load"


def test_save_is_atomic(saved: Path, monkeypatch: pytest.MonkeyPatch):
    before = saved.read_bytes()
    table = LatencyTable.load(saved)
    table.add("c", C)

    def crash(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        table.save()
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["lut.json"]  # no temp file left
    monkeypatch.undo()
    table.save()
    assert LatencyTable.load(saved).entries == {"a": A, "b": B, "c": C}


# --- damaged files: exact messages ------------------------------------------------------------------


def test_truncated_file(saved: Path):
    saved.write_bytes(saved.read_bytes()[:120])
    assert load_error(saved) == (f"{saved}: damaged latency table: not valid JSON (line 7, column 3): "
                                 "Unterminated string starting at")
    saved.write_text("")
    assert load_error(saved) == f"{saved}: damaged latency table: not valid JSON (line 1, column 1): Expecting value"


def test_wrong_format_and_version(saved: Path):
    rewrite(saved, lambda d: d.update(version=4))
    assert load_error(saved) == f"{saved}: damaged latency table: version 4 is not supported (this code reads version 3)"
    rewrite(saved, lambda d: d.update(version=1))
    assert load_error(saved) == (f"{saved}: latency table version 1 was timed one call per visit (a cold-cache "
                                 f"figure 6-10% off a plain timing) and has no speed level; this code reads version 3: "
                                 f"rebuild it with `nas lut build`")
    rewrite(saved, lambda d: d.update(version=2))
    assert load_error(saved) == (f"{saved}: latency table version 2 was timed while glibc's malloc could page-fault "
                                 f"on every call, as the process's history had it (up to 1.8x slower); this code "
                                 f"reads version 3: rebuild it with `nas lut build`")
    rewrite(saved, lambda d: d.update(format="something-else"))
    assert load_error(saved) == (f"{saved}: damaged latency table: format is 'something-else', "
                                 "expected 'nas-latency-table'")
    saved.write_text("[1, 2]")
    assert load_error(saved) == f"{saved}: damaged latency table: top level is not an object"


def test_edited_value_fails_the_checksum(saved: Path):
    rewrite(saved, lambda d: d["entries"]["a"].update(ms=1.0))
    assert load_error(saved) == f"{saved}: damaged latency table: checksum mismatch (the file was edited or damaged)"


def test_edited_profile_fails_the_checksum(saved: Path):
    rewrite(saved, lambda d: d["profile"].update(threads=2))
    assert load_error(saved) == f"{saved}: damaged latency table: checksum mismatch (the file was edited or damaged)"


def test_reformatted_file_still_loads(saved: Path):
    rewrite(saved, lambda d: None)  # different whitespace, same content
    assert LatencyTable.load(saved).entries == {"a": A, "b": B}


@pytest.mark.parametrize("edit, why", [
    (lambda d: d.pop("entries"), "missing field 'entries'"),
    (lambda d: d.update(extra=1), "unknown field 'extra'"),
    (lambda d: d["entries"]["a"].pop("runs"), "entries['a']: missing field 'runs'"),
    (lambda d: d["entries"]["a"].update(ms=-1.5), "entries['a'].ms: -1.5 is negative"),
    (lambda d: d["entries"]["b"].update(runs="30"), "entries['b'].runs: '30' is not an integer"),
    (lambda d: d["entries"]["b"].update(rounds=0), "entries['b'].rounds: 0 is less than 1"),
    (lambda d: d["entries"].update(c=[1.0]), "entries['c']: expected an object, got a list"),
    (lambda d: d["profile"].pop("threads"), "profile: missing field 'threads'"),
    (lambda d: d["profile"].update(backend="tpu"),
     "profile: unknown backend 'tpu'; choose one of torch, torchscript, onnxruntime, cuda"),
    (lambda d: d["correction"].update(n=-1), "correction: n: -1 is less than 0"),
    (lambda d: d["correction"].update(residual_sd=-0.1), "correction: residual_sd: -0.1 is negative"),
    (lambda d: d.update(reference={"ms": -0.8, "spread_ms": 0.0, "runs": 2, "rounds": 1}),
     "reference: ms: -0.8 is negative"),
    (lambda d: d.update(reference=[0.8]), "reference: expected an object, got a list"),
    (lambda d: d.pop("reference"), "missing field 'reference'"),
    (lambda d: d.update(entries=[]), "entries is not an object"),
])
def test_bad_fields(saved: Path, edit, why):
    rewrite(saved, edit)
    assert load_error(saved) == f"{saved}: damaged latency table: {why}"


def test_nan_and_duplicate_keys_are_refused(saved: Path):
    text = saved.read_text()
    saved.write_text(text.replace('"ms": 1.25', '"ms": NaN'))
    assert load_error(saved) == f"{saved}: damaged latency table: not valid JSON: NaN is not allowed"
    saved.write_text(text.replace('"ms": 1.25', '"ms": 1.25, "ms": 1.0'))
    assert load_error(saved) == f"{saved}: damaged latency table: not valid JSON: duplicate key 'ms'"


def test_missing_file(tmp_path: Path):
    path = tmp_path / "nope.json"
    assert load_error(path) == f"{path}: cannot read latency table: No such file or directory"


def test_profile_mismatch_lists_the_fields(saved: Path):
    now = dataclasses.replace(PROFILE, threads=2, batch_size=8)
    with pytest.raises(ProfileMismatchError) as info:
        LatencyTable.load(saved, expect=now)
    assert str(info.value) == (f"{saved}: table profile differs in threads (table 4, now 2), "
                               "batch_size (table 1, now 8)")
    assert info.value.differences == ["threads (table 4, now 2)", "batch_size (table 1, now 8)"]


# --- the journal --------------------------------------------------------------------------------------


def test_killed_build_keeps_complete_entries(tmp_path: Path):
    path = tmp_path / "lut.json"
    table = LatencyTable.create(PROFILE, path)
    ctx = table.open_journal()
    ctx.__enter__()  # the build is "killed" inside the block: no clean exit, no save
    for key, entry in (("a", A), ("b", B), ("c", C)):
        table.add(key, entry)
    with open(journal_path(path), "ab") as f:  # the 4th entry was being written when the process died
        f.write(b'{"key":"d","ms":0.7,"rou')
    assert not path.exists()  # never saved: everything is in the journal

    resumed = LatencyTable.load(path, expect=PROFILE)
    assert resumed.entries == {"a": A, "b": B, "c": C}
    assert resumed.journal_skipped == 1
    assert resumed.profile == PROFILE and resumed.path == path

    # end the abandoned context as a crash would (the exception propagates: __exit__ does not swallow it)
    assert ctx.__exit__(RuntimeError, RuntimeError("killed"), None) is False
    assert journal_path(path).exists() and not path.exists()

    with resumed.open_journal():  # resuming folds the old journal into the table first
        assert LatencyTable.load(path).entries == {"a": A, "b": B, "c": C}
        resumed.add("d", Entry(ms=0.7, spread_ms=0.0, runs=15, rounds=1))
    assert not journal_path(path).exists()
    assert sorted(LatencyTable.load(path).entries) == ["a", "b", "c", "d"]


def test_clean_exit_saves_and_removes_the_journal(saved: Path):
    table = LatencyTable.load(saved)
    with table.open_journal() as same:
        assert same is table
        table.add("c", C)
        assert journal_path(saved).exists()
    assert not journal_path(saved).exists()
    assert LatencyTable.load(saved).entries == {"a": A, "b": B, "c": C}


def test_error_in_block_leaves_the_journal_for_resume(saved: Path):
    table = LatencyTable.load(saved)
    with pytest.raises(KeyboardInterrupt):
        with table.open_journal():
            table.add("c", C)
            raise KeyboardInterrupt
    assert json.loads(saved.read_text())["entries"].keys() == {"a", "b"}  # not saved
    resumed = LatencyTable.load(saved)
    assert resumed.entries == {"a": A, "b": B, "c": C} and resumed.journal_skipped == 0


def test_each_journaled_entry_is_fsynced(saved: Path, monkeypatch: pytest.MonkeyPatch):
    table = LatencyTable.load(saved)
    with table.open_journal():
        calls = []
        real = os.fsync
        monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
        table.add("c", C)
        table.add("d", C)
        assert len(calls) == 2
        monkeypatch.undo()


def test_save_inside_the_journal_truncates_it(saved: Path):
    table = LatencyTable.load(saved)
    with table.open_journal():
        table.add("c", C)
        table.save()
        assert len(journal_path(saved).read_text().splitlines()) == 1  # only the header
        table.add("d", A)
        with pytest.raises(LatencyError, match="while the journal of"):
            table.save(saved.with_name("other.json"))
    assert LatencyTable.load(saved).entries == {"a": A, "b": B, "c": C, "d": A}


def test_damaged_journal_line(saved: Path):
    table = LatencyTable.load(saved)
    with pytest.raises(KeyboardInterrupt), table.open_journal():
        table.add("c", C)
        raise KeyboardInterrupt
    journal = journal_path(saved)
    journal.write_text(journal.read_text() + "garbage\n" + '{"key":"e","ms":1.0}\n')
    with pytest.raises(TableError) as info:
        LatencyTable.load(saved)
    assert str(info.value) == (f"{journal}: damaged latency journal: line 3: "
                               "not valid JSON (line 1, column 1): Expecting value")
    journal.write_text(journal.read_text().replace("garbage\n", ""))
    with pytest.raises(TableError) as info:
        LatencyTable.load(saved)
    assert str(info.value) == f"{journal}: damaged latency journal: line 3: missing field 'spread_ms'"


def test_journal_of_another_profile_is_refused(saved: Path, tmp_path: Path):
    other = LatencyTable.create(dataclasses.replace(PROFILE, threads=1), tmp_path / "other.json")
    with pytest.raises(KeyboardInterrupt), other.open_journal():
        other.add("x", A)
        raise KeyboardInterrupt
    journal_path(tmp_path / "other.json").rename(journal_path(saved))
    other_id = dataclasses.replace(PROFILE, threads=1).id
    assert load_error(saved) == (f"{journal_path(saved)}: damaged latency journal: it belongs to profile "
                                 f"{other_id}, the table to {PROFILE.id}")


def test_journal_without_header_and_without_table(tmp_path: Path):
    path = tmp_path / "lut.json"
    journal_path(path).write_bytes(b'{"format":"nas-lat')
    assert load_error(path) == (f"{journal_path(path)}: damaged latency journal: no complete header line and "
                                f"no table at {path}; delete the journal to start over")


def test_the_level_is_saved_journaled_and_merged(tmp_path: Path):
    table = LatencyTable.create(PROFILE, tmp_path / "t.json")
    with pytest.raises(RuntimeError), table.open_journal():
        table.add("a", A)
        table.set_reference(B)
        raise RuntimeError("killed mid-build")
    resumed = LatencyTable.load(tmp_path / "t.json")  # no table file yet: all from the journal
    assert resumed.reference == B and resumed.entries == {"a": A}
    resumed.save()
    again = LatencyTable.load(tmp_path / "t.json")
    assert again.reference == B and "@reference" not in again.entries
    assert json.loads((tmp_path / "t.json").read_text())["reference"] == B.to_dict()


def test_the_network_level_is_saved_journaled_and_merged(tmp_path: Path):
    table = LatencyTable.create(PROFILE, tmp_path / "t.json")
    with pytest.raises(RuntimeError), table.open_journal():
        table.add("a", A)
        table.set_reference(B)
        table.set_network_reference(C)
        raise RuntimeError("killed mid-build")
    resumed = LatencyTable.load(tmp_path / "t.json")
    assert (resumed.reference, resumed.network_reference, resumed.entries) == (B, C, {"a": A})
    resumed.save()
    again = LatencyTable.load(tmp_path / "t.json")
    assert again.network_reference == C and "@network_reference" not in again.entries
    assert json.loads((tmp_path / "t.json").read_text())["network_reference"] == C.to_dict()
    with pytest.raises(LatencyError, match="other than '@reference' and '@network_reference'"):
        table.add("@network_reference", A)


def test_a_table_written_before_the_network_level_existed_still_loads(saved: Path):
    """Version-2 tables from before the network probe have no `network_reference` field; their
    checksum covers the fields they have, so they load unchanged with no network level."""
    from proxies.latency.table import _checksum

    doc = json.loads(saved.read_text())
    del doc["network_reference"]
    doc["checksum"] = _checksum(doc)
    saved.write_text(json.dumps(doc, indent=1))
    table = LatencyTable.load(saved)
    assert table.network_reference is None and table.entries == {"a": A, "b": B}
    doc["network_reference"] = {"ms": -1}  # present but broken is still refused
    doc["checksum"] = _checksum(doc)
    saved.write_text(json.dumps(doc, indent=1))
    assert "network_reference" in load_error(saved)


def test_a_version_2_table_of_a_remote_device_still_loads(tmp_path: Path):
    # Version 3 changed how this machine times; a table another device's own tool timed is the same.
    remote = DeviceProfile(backend="tflite", device="Pixel 8 CPU", threads=4, batch_size=1, torch_version=None)
    table = LatencyTable.create(remote, tmp_path / "remote.json")
    table.add("a", Entry(ms=1.5, spread_ms=0.1, runs=5, rounds=1))
    path = table.save()
    rewrite(path, lambda d: d.update(version=2, checksum=_checksum({**d, "version": 2})))
    assert LatencyTable.load(path, expect=remote).get("a").ms == 1.5
