"""Supernet checkpoints: plain tensors and containers (they load with `torch.load(weights_only=True)`),
stamped with the space's fingerprint so that a checkpoint is never used with another space.

Layout (format "nas-supernet/1"):
    format, space (name), space_file, space_fingerprint, num_classes,
    model: the supernet's state dict,
    train: whatever the trainer needs to resume (plain values and tensors), absent for a finished export.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nas.space import SearchSpace, space_fingerprint
from nas.supernet.model import Supernet, SupernetError

FORMAT = "nas-supernet/1"


def save_checkpoint(path: str | os.PathLike, supernet: Supernet, train: dict[str, Any] | None = None) -> None:
    """Write atomically (temporary file, then rename): a kill mid-write leaves the previous checkpoint."""
    path = Path(path)
    doc: dict[str, Any] = {
        "format": FORMAT, "space": supernet.space.name, "space_file": str(supernet.space.file),
        "space_fingerprint": space_fingerprint(supernet.space), "num_classes": supernet.space.num_classes,
        "model": supernet.state_dict(),
    }
    if train is not None:
        doc["train"] = train
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(doc, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's contents, checked for its format; one-line `SupernetError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SupernetError(f"{path}: no such supernet checkpoint")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SupernetError(f"{path}: not a readable supernet checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SupernetError(f"{path}: not a supernet checkpoint (expected format {FORMAT!r})")
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
    supernet = Supernet(check_space(doc, space, path))
    try:
        supernet.load_state_dict(doc["model"], strict=True)
    except (RuntimeError, KeyError) as exc:
        raise SupernetError(f"{path}: its weights do not fit the supernet of {space.file} "
                            f"({str(exc).strip().splitlines()[0]})") from None
    return supernet.eval(), doc
