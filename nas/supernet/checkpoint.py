"""Supernet checkpoints: plain tensors and containers (they load with `torch.load(weights_only=True)`),
stamped with the space's fingerprint so that a checkpoint is never used with another space.

Layout (format "nas-supernet/1"):
    format, space (name), space_file, space_fingerprint, num_classes,
    model: the supernet's state dict,
    train: whatever the trainer needs to resume (plain values and tensors), absent for a finished export.
"""
from __future__ import annotations

import io
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nas.space import SearchSpace, space_fingerprint
from nas.supernet.model import Supernet, SupernetError
from proxies.atomic import write_bytes_atomic

FORMAT = "nas-supernet/1"
_KEYS = ("space", "space_file", "space_fingerprint", "num_classes", "model")


def save_checkpoint(path: str | os.PathLike, supernet: Supernet, train: dict[str, Any] | None = None) -> None:
    """Write atomically (a temporary file beside `path`, synced, then renamed over it): a kill or an error
    mid-write leaves the previous checkpoint as it was."""
    doc: dict[str, Any] = {
        "format": FORMAT, "space": supernet.space.name, "space_file": str(supernet.space.file),
        "space_fingerprint": space_fingerprint(supernet.space), "num_classes": supernet.space.num_classes,
        "model": supernet.state_dict(),
    }
    if train is not None:
        doc["train"] = train
    buffer = io.BytesIO()
    torch.save(doc, buffer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())


def _reason(exc: BaseException) -> str:
    """The useful part of a load error, first sentence only: torch's weights-only refusal puts the cause after
    a long preamble that suggests `weights_only=False`, which is no cure for a file that is not a checkpoint;
    its zip reader starts with the C++ source line."""
    text = str(exc).split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = re.sub(r"^\[enforce fail at [^\]]*\][ .]*", "", lines[0]).split(". ")[0] if lines else ""
    return f"{type(exc).__name__}: {first[:120]}" if first else type(exc).__name__


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's contents, checked for its format; one-line `SupernetError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SupernetError(f"{path}: {'a folder, not a' if path.is_dir() else 'no such'} supernet checkpoint")
    if path.stat().st_size == 0:
        raise SupernetError(f"{path}: an empty file, not a supernet checkpoint")
    if not zipfile.is_zipfile(path):  # torch's own reader fails on a cut-short archive with a bare OSError
        raise SupernetError(f"{path}: not a readable supernet checkpoint (not the zip archive torch.save writes: "
                            f"another kind of file, or one cut short)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            doc = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, KeyError, OSError) as exc:
        raise SupernetError(f"{path}: not a readable supernet checkpoint ({_reason(exc)})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SupernetError(f"{path}: not a supernet checkpoint (expected format {FORMAT!r})")
    missing = [key for key in _KEYS if key not in doc]
    if missing:
        raise SupernetError(f"{path}: a damaged supernet checkpoint (no {missing[0]!r})")
    return doc


def check_space(doc: dict[str, Any], space: SearchSpace, path: str | os.PathLike) -> SearchSpace:
    """`space` as the checkpoint was trained on it (its class count), or a one-line refusal when the
    checkpoint was made for another space."""
    space = replace(space, num_classes=int(doc["num_classes"]))
    want, have = doc["space_fingerprint"], space_fingerprint(space)
    if want != have:
        raise SupernetError(f"{path}: made for space {doc['space']!r} ({doc['space_file']}, fingerprint {want}), "
                            f"not for {space.file} (fingerprint {have}); train a supernet for this space")
    return space


def load_supernet(path: str | os.PathLike, space: SearchSpace) -> tuple[Supernet, dict[str, Any]]:
    """The supernet stored at `path` for `space`, in eval mode, and the checkpoint's contents."""
    doc = read_checkpoint(path)
    space = check_space(doc, space, path)
    with torch.random.fork_rng(devices=[]):  # the initial values are overwritten: leave the caller's stream be
        supernet = Supernet(space)
    try:
        supernet.load_state_dict(doc["model"], strict=True)
    except RuntimeError as exc:  # "Error(s) in loading state_dict for Supernet:" and then what
        detail = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()] or [str(exc)]
        raise SupernetError(f"{path}: its weights do not fit the supernet of {space.file} ({detail[0][:200]})") from None
    return supernet.eval(), doc
