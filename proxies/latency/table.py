"""Latency lookup table: measured ms per opaque key for one device profile, stored as JSON.

Why: measuring a block takes a fraction of a second; looking it up takes
microseconds.  The file is written atomically, carries a checksum, and is
refused when it belongs to another profile.  A build appends each entry to a
journal (``<path>.journal``) with fsync, so a killed build loses at most the
entry being measured and resumes from the rest.

``reference`` is the table's speed level: the time of the fixed probe module
(`proxies.latency.reference`) when the first entries were measured. Entries
measured later, in other sessions or under other load, are rescaled to it by
the probe timed beside them, so a table grown over many sessions is consistent.
``network_reference`` is the same for whole networks: the network probe's time
read together with ``reference`` (`nas.latency.timing.TableTimer.ensure_levels`),
so both name one state of the machine. Predictions are end-to-end latency at
that speed; a search reads the network probe to say what they mean on the
machine as it runs now. Tables written with one level get the other at that
level's state the next time they measure.
Version 1 tables timed one call per visit (a cold-cache figure) and have no
level; they are refused with a message saying to rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from proxies.atomic import write_bytes_atomic
from proxies.latency.errors import LatencyError, ProfileMismatchError, TableError
from proxies.latency.profile import DeviceProfile
from proxies.latency.records import Correction, Entry, canonical_json, parse_fields, strict_json

__all__ = ["FORMAT", "JOURNAL_FORMAT", "NETWORK_REFERENCE_KEY", "REFERENCE_KEY", "VERSION", "LatencyTable",
           "journal_path"]

FORMAT = "nas-latency-table"
JOURNAL_FORMAT = "nas-latency-journal"
# 3: every figure timed with freed memory kept (proxies.latency.allocator); a version 2 table timed
# on this machine mixed figures taken with and without page faults per call (up to 1.8x apart).
VERSION = 3
REFERENCE_KEY = "@reference"  #: the journal line holding the table's level
NETWORK_REFERENCE_KEY = "@network_reference"  #: the journal line holding the table's network level
_FIELDS = ("format", "version", "profile", "correction", "reference", "network_reference", "entries", "checksum")
_OPTIONAL_FIELDS = ("network_reference",)  # absent from tables written before it existed


def journal_path(path: str | os.PathLike[str]) -> Path:
    """Where the journal of the table at `path` lives: ``<path>.journal``."""
    path = Path(path)
    return path.with_name(path.name + ".journal")


def _checksum(document: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of every field but the checksum itself."""
    body = {k: v for k, v in document.items() if k != "checksum"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable (best effort; not every OS allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _file_mode(target: Path) -> int:
    """Keep an existing file's permissions; new files get rw-r--r-- (mkstemp alone would give rw-------)."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        return 0o644


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_text(path: Path, what: str) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TableError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}: damaged {what}: not valid UTF-8 (byte {exc.start})") from None


def _entry_problem(key: str, exc: Exception) -> str:
    """``entries['k'].ms: -1.0 is negative`` for a field's value, ``entries['k']: missing field 'ms'`` otherwise."""
    text = str(exc)
    if text.split(":", 1)[0] in Entry.__dataclass_fields__:
        return f"entries[{key!r}].{text}"
    return f"entries[{key!r}]: {text}"


def _parse_table(path: Path) -> tuple[DeviceProfile, Correction | None, dict[str, Entry | None], dict[str, Entry]]:
    """Profile, correction, levels (`reference`, `network_reference`) and entries of the table file;
    TableError names the first problem."""

    def damaged(why: str) -> TableError:
        return TableError(f"{path}: damaged latency table: {why}")

    try:
        doc = strict_json(_read_text(path, "latency table"))
    except ValueError as exc:
        raise damaged(str(exc)) from None
    if not isinstance(doc, dict):
        raise damaged("top level is not an object")
    if "format" in doc and doc["format"] != FORMAT:
        raise damaged(f"format is {doc['format']!r}, expected {FORMAT!r}")
    if doc.get("version") == 1:
        raise TableError(f"{path}: latency table version 1 was timed one call per visit (a cold-cache figure "
                         f"6-10% off a plain timing) and has no speed level; this code reads version {VERSION}: "
                         f"rebuild it with `nas lut build`")
    if "version" in doc and doc["version"] not in (2, VERSION):
        raise damaged(f"version {doc['version']!r} is not supported (this code reads version {VERSION})")
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise damaged(f"unknown field {unknown[0]!r}")
    missing = [name for name in _FIELDS if name not in doc and name not in _OPTIONAL_FIELDS]
    if missing:
        raise damaged(f"missing field {missing[0]!r}")
    try:
        profile = DeviceProfile.from_dict(doc["profile"])
    except (TypeError, ValueError) as exc:
        raise damaged(f"profile: {exc}") from None
    if doc.get("version") == 2 and not profile.remote:  # a remote device's own tool timed it: unchanged
        raise TableError(f"{path}: latency table version 2 was timed while glibc's malloc could page-fault on "
                         f"every call, as the process's history had it (up to 1.8x slower); this code reads "
                         f"version {VERSION}: rebuild it with `nas lut build`")
    optional = {}
    for name, cls in (("correction", Correction), ("reference", Entry), ("network_reference", Entry)):  # may be null
        try:
            optional[name] = None if doc.get(name) is None else parse_fields(cls, doc[name])
        except (TypeError, ValueError) as exc:
            raise damaged(f"{name}: {exc}") from None
    correction = optional.pop("correction")
    if not isinstance(doc["entries"], dict):
        raise damaged("entries is not an object")
    entries = {}
    for key, value in doc["entries"].items():
        try:
            entries[key] = parse_fields(Entry, value)
        except (TypeError, ValueError) as exc:
            raise damaged(_entry_problem(key, exc)) from None
    if doc["checksum"] != _checksum(doc):
        raise damaged("checksum mismatch (the file was edited or damaged)")
    return profile, correction, optional, entries


def _parse_journal(path: Path) -> tuple[DeviceProfile | None, dict[str, Entry], int]:
    """Header profile (None if no complete header), entries of complete lines (the level under
    REFERENCE_KEY), and lines skipped.

    A final line without its newline is the entry that was being written when
    the build stopped: it is skipped and counted, never guessed at.
    """
    text = _read_text(path, "latency journal")
    lines = text.split("\n")
    partial = lines.pop()  # "" when the journal ends with a newline
    skipped = 1 if partial else 0
    if not lines:
        return None, {}, skipped

    def damaged(number: int, why: str) -> TableError:
        return TableError(f"{path}: damaged latency journal: line {number}: {why}")

    try:
        header = strict_json(lines[0])
        if not isinstance(header, dict) or set(header) != {"format", "version", "profile"}:
            raise ValueError("not a journal header")
        if header["format"] != JOURNAL_FORMAT or header["version"] != VERSION:
            raise ValueError(f"format {header['format']!r} version {header['version']!r} is not "
                             f"{JOURNAL_FORMAT!r} version {VERSION}")
        profile = DeviceProfile.from_dict(header["profile"])
    except (TypeError, ValueError) as exc:
        raise damaged(1, str(exc)) from None
    entries = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            record = strict_json(line)
            if not isinstance(record, dict) or not isinstance(record.get("key"), str):
                raise ValueError("expected an object with a string 'key'")
            key = record.pop("key")
            entries[key] = parse_fields(Entry, record)
        except (TypeError, ValueError) as exc:
            raise damaged(number, str(exc)) from None
    return profile, entries, skipped


class LatencyTable:
    """Measured latency per key for one device profile, with an optional fitted correction.

    ``journal_skipped`` counts journal lines dropped on load (an entry that was
    in flight when a build was killed).
    """

    def __init__(self, profile: DeviceProfile, entries: dict[str, Entry] | None = None,
                 correction: Correction | None = None, path: str | os.PathLike[str] | None = None,
                 reference: Entry | None = None, network_reference: Entry | None = None) -> None:
        self.profile = profile
        self.entries: dict[str, Entry] = dict(entries or {})
        self.correction = correction
        self.reference = reference  #: the probe's time at the table's speed level (None until first measured)
        #: the network probe's time at the same state of the machine (None until first measured)
        self.network_reference = network_reference
        self.path = Path(path) if path is not None else None
        self.journal_skipped = 0
        self._journal_fd: int | None = None

    def __repr__(self) -> str:
        return f"LatencyTable({self.profile.id}, {len(self)} entries, path={str(self.path)!r})"

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def get(self, key: str) -> Entry | None:
        """The entry for `key`, or None when it has not been measured."""
        return self.entries.get(key)

    def add(self, key: str, entry: Entry) -> None:
        """Record (or replace) the entry for `key`; journaled and fsynced when a journal is open."""
        if not isinstance(key, str) or not key or key in (REFERENCE_KEY, NETWORK_REFERENCE_KEY):
            raise LatencyError(f"table keys must be non-empty strings other than {REFERENCE_KEY!r} and "
                               f"{NETWORK_REFERENCE_KEY!r}, got {key!r}")
        if not isinstance(entry, Entry):
            raise LatencyError(f"table entries must be Entry, got {type(entry).__name__}")
        self.entries[key] = entry
        self._journal(key, entry)

    def set_reference(self, entry: Entry) -> None:
        """Record the table's speed level (the probe's time); journaled like an entry."""
        if not isinstance(entry, Entry):
            raise LatencyError(f"the table's reference must be an Entry, got {type(entry).__name__}")
        self.reference = entry
        self._journal(REFERENCE_KEY, entry)

    def set_network_reference(self, entry: Entry) -> None:
        """Record the table's network level (the network probe's time); journaled like an entry."""
        if not isinstance(entry, Entry):
            raise LatencyError(f"the table's network reference must be an Entry, got {type(entry).__name__}")
        self.network_reference = entry
        self._journal(NETWORK_REFERENCE_KEY, entry)

    def _journal(self, key: str, entry: Entry) -> None:
        if self._journal_fd is not None:
            line = canonical_json({"key": key, **entry.to_dict()}) + "\n"
            _write_all(self._journal_fd, line.encode("utf-8"))
            os.fsync(self._journal_fd)

    def to_document(self) -> dict[str, Any]:
        """The JSON document `save` writes (keys sorted, checksum included)."""
        if self.correction is not None and not isinstance(self.correction, Correction):
            raise LatencyError(f"table correction must be Correction or None, got {type(self.correction).__name__}")
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "profile": self.profile.to_dict(),
            "correction": None if self.correction is None else self.correction.to_dict(),
            "reference": None if self.reference is None else self.reference.to_dict(),
            "network_reference": None if self.network_reference is None else self.network_reference.to_dict(),
            "entries": {key: self.entries[key].to_dict() for key in sorted(self.entries)},
        }
        doc["checksum"] = _checksum(doc)
        return doc

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the table atomically (temp file beside it, fsync, rename) and clear its journal."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise LatencyError("this table has no path; call save(path)")
        if self._journal_fd is not None and target != self.path:
            raise LatencyError(f"cannot save to {target} while the journal of {self.path} is open")
        text = json.dumps(self.to_document(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, text.encode("utf-8"), _file_mode(target))
        _fsync_dir(target.parent)
        self.path = target
        if self._journal_fd is not None:  # everything journaled so far is in the file now
            os.ftruncate(self._journal_fd, 0)
            self._write_journal_header(self._journal_fd)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(journal_path(target))
        return target

    @classmethod
    def create(cls, profile: DeviceProfile, path: str | os.PathLike[str]) -> LatencyTable:
        """An empty table bound to `path`; refuses to shadow an existing table or journal there."""
        path = Path(path)
        for existing in (path, journal_path(path)):
            if existing.exists():
                raise LatencyError(f"{existing}: already exists; open it with LatencyTable.load")
        return cls(profile, path=path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], expect: DeviceProfile | None = None) -> LatencyTable:
        """Read and fully check a table, merging the journal of an interrupted build if there is one.

        Raises TableError (damaged, truncated, edited, wrong version) or
        ProfileMismatchError (profile differs from `expect`); never returns a partial table.
        """
        path = Path(path)
        journal = journal_path(path)
        has_journal = journal.exists()
        if path.exists() or not has_journal:
            profile, correction, levels, entries = _parse_table(path)
        else:
            profile, correction, levels, entries = None, None, {}, {}
        skipped = 0
        if has_journal:
            journal_profile, journaled, skipped = _parse_journal(journal)
            if profile is None:
                if journal_profile is None:
                    raise TableError(f"{journal}: damaged latency journal: no complete header line and no "
                                     f"table at {path}; delete the journal to start over")
                profile = journal_profile
            elif journal_profile is not None and journal_profile != profile:
                raise TableError(f"{journal}: damaged latency journal: it belongs to profile "
                                 f"{journal_profile.id}, the table to {profile.id}")
            for name, key in (("reference", REFERENCE_KEY), ("network_reference", NETWORK_REFERENCE_KEY)):
                levels[name] = journaled.pop(key, levels.get(name))
            entries.update(journaled)
        table = cls(profile, entries, correction, path, levels.get("reference"), levels.get("network_reference"))
        table.journal_skipped = skipped
        if expect is not None:
            table.require_profile(expect)
        return table

    def require_profile(self, expect: DeviceProfile) -> None:
        """ProfileMismatchError naming the differing fields unless this table was measured on `expect`."""
        if expect != self.profile:
            diffs = self.profile.differences(expect)
            raise ProfileMismatchError(f"{self.path}: table profile differs in {', '.join(diffs)}", diffs)

    def _write_journal_header(self, fd: int) -> None:
        header = {"format": JOURNAL_FORMAT, "version": VERSION, "profile": self.profile.to_dict()}
        _write_all(fd, (canonical_json(header) + "\n").encode("utf-8"))
        os.fsync(fd)

    @contextlib.contextmanager
    def open_journal(self) -> Iterator[LatencyTable]:
        """Journal every add() to ``<path>.journal`` until the block ends; a clean exit saves the table.

        If the block raises (or the process dies), the journal stays, and the
        next `load` merges it.  A journal left by an interrupted build is folded
        into the table file first.
        """
        if self.path is None:
            raise LatencyError("open_journal needs a table bound to a path (create(profile, path) or save(path))")
        if self._journal_fd is not None:
            raise LatencyError(f"the journal of {self.path} is already open")
        journal = journal_path(self.path)
        if journal.exists():
            self.save()  # merge-and-remove: this table was loaded with the journal's entries
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._journal_fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            self._write_journal_header(self._journal_fd)
            _fsync_dir(self.path.parent)
        except BaseException:
            self._close_journal()
            raise
        try:
            yield self
        except BaseException:
            self._close_journal()
            raise
        self._close_journal()
        self.save()

    def _close_journal(self) -> None:
        if self._journal_fd is not None:
            fd, self._journal_fd = self._journal_fd, None
            os.close(fd)
