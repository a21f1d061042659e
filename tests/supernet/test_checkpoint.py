"""Supernet checkpoints: a round trip gives the same subnets, the file loads with plain
`torch.load(weights_only=True)`, another space's checkpoint and unreadable files are refused in one line,
and a write that fails half-way leaves the previous checkpoint as it was."""
from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from nas.space import load_space, plan, sample, space_fingerprint
from nas.supernet import Supernet, SupernetError, load_supernet, read_checkpoint, save_checkpoint
from nas.supernet.checkpoint import FORMAT

TOL = 1e-5


def space_file(tmp_path: Path, name: str, widths: list[int], num_classes: int = 5) -> Path:
    doc = {"name": name, "resolution": [12, 16], "num_classes": num_classes, "stem": {"out": 8, "kernel": 3},
           "stages": [{"stride": 2, "depth": [1, 2], "width": widths,
                       "block": {"op": ["inverted_residual", "sandglass"], "kernel": [3, 5], "expand": [2, 4],
                                 "se": [False, True]}}],
           "head": {"pool": "avg"}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def trained(tmp_path: Path) -> Supernet:
    """A small supernet whose weights and running statistics are no longer their initial values."""
    torch.manual_seed(0)
    supernet = Supernet(load_space(space_file(tmp_path, "small", [16, 24])))
    optimiser = torch.optim.SGD(supernet.parameters(), lr=0.1)
    for seed in range(3):
        arch = sample(supernet.space, seed)
        res = plan(supernet.space, arch).resolution
        optimiser.zero_grad()
        supernet(torch.randn(4, 3, res, res), arch).logsumexp(1).mean().backward()
        optimiser.step()
    return supernet.eval()


def one_line(exc: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_a_round_trip_gives_the_same_subnets(trained: Supernet, tmp_path: Path) -> None:
    path = tmp_path / "ck" / "supernet.pt"  # the folder is made
    save_checkpoint(path, trained)
    state = torch.random.get_rng_state()
    loaded, doc = load_supernet(path, load_space(trained.space.file))
    assert torch.equal(torch.random.get_rng_state(), state)  # loading draws nothing: a resumed run stays seeded
    assert not loaded.training and "train" not in doc
    assert loaded.state_dict().keys() == trained.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), trained.state_dict().values()))
    for seed in range(4):
        arch = sample(trained.space, seed)
        res = plan(trained.space, arch).resolution
        x = torch.randn(2, 3, res, res)
        with torch.no_grad():
            assert (loaded(x, arch) - trained(x, arch)).abs().max().item() <= TOL


def test_the_file_loads_with_plain_weights_only_torch_load(trained: Supernet, tmp_path: Path) -> None:
    optimiser = torch.optim.Adam(trained.parameters())
    train = {"epoch": 3, "step": 120, "seed": 0, "rng": torch.random.get_rng_state(),
             "optimizer": optimiser.state_dict(), "history": [{"loss": 1.5}, {"loss": 1.25}]}
    save_checkpoint(tmp_path / "supernet.pt", trained, train=train)
    doc = torch.load(tmp_path / "supernet.pt", weights_only=True)
    assert doc["format"] == FORMAT and doc["space"] == "small" and doc["num_classes"] == 5
    assert doc["space_file"] == str(trained.space.file)
    assert doc["train"]["epoch"] == 3 and doc["train"]["history"] == train["history"]
    assert torch.equal(doc["train"]["rng"], train["rng"])
    assert doc["model"].keys() == trained.state_dict().keys()
    assert read_checkpoint(tmp_path / "supernet.pt")["space_fingerprint"] == doc["space_fingerprint"]


def test_a_checkpoint_of_another_space_is_refused_naming_both(trained: Supernet, tmp_path: Path) -> None:
    path = tmp_path / "supernet.pt"
    save_checkpoint(path, trained)
    other = load_space(space_file(tmp_path, "other", [16, 32]))
    with pytest.raises(SupernetError) as exc:
        load_supernet(path, other)
    want = read_checkpoint(path)["space_fingerprint"]
    assert one_line(exc) == (f"{path}: made for space 'small' ({trained.space.file}, fingerprint {want}), "
                             f"not for {other.file} (fingerprint {space_fingerprint(other)}); "
                             f"train a supernet for this space")


def test_the_class_count_comes_from_the_checkpoint(trained: Supernet, tmp_path: Path) -> None:
    """A space file read for another data set's class count still takes the checkpoint's head."""
    save_checkpoint(tmp_path / "supernet.pt", trained)
    (tmp_path / "ten").mkdir()
    loaded, _ = load_supernet(tmp_path / "supernet.pt", load_space(space_file(tmp_path / "ten", "small", [16, 24], 10)))
    arch = sample(loaded.space, 0)
    res = plan(loaded.space, arch).resolution
    assert loaded.space.num_classes == 5 and loaded(torch.zeros(1, 3, res, res), arch).shape == (1, 5)


NOT_ZIP = ("not a readable supernet checkpoint (not the zip archive torch.save writes: another kind of file, "
           "or one cut short)")


@pytest.mark.parametrize("content, reason", [
    (b"", "an empty file, not a supernet checkpoint"),
    (bytes(range(256)) * 4, NOT_ZIP),
    (b"hello world\n", NOT_ZIP),
    (pickle.dumps({"format": FORMAT}), NOT_ZIP),  # torch's legacy format is never written here
])
def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_line(content: bytes, reason: str, tmp_path: Path) -> None:
    path = tmp_path / "supernet.pt"
    path.write_bytes(content)
    with pytest.raises(SupernetError) as exc:
        read_checkpoint(path)
    assert one_line(exc) == f"{path}: {reason}"


def test_a_file_with_objects_weights_only_refuses_is_refused_naming_the_object(tmp_path: Path) -> None:
    path = tmp_path / "supernet.pt"
    torch.save({"format": FORMAT, "settings": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(SupernetError) as exc:
        read_checkpoint(path)
    assert one_line(exc) == (f"{path}: not a readable supernet checkpoint (UnpicklingError: Unsupported global: "
                             f"GLOBAL argparse.Namespace was not an allowed global by default)")


def test_other_torch_files_and_missing_files_are_refused_in_one_line(trained: Supernet, tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.pt": "no such supernet checkpoint",
        tmp_path: "a folder, not a supernet checkpoint",
        tmp_path / "weights.pt": f"not a supernet checkpoint (expected format {FORMAT!r})",
        tmp_path / "damaged.pt": "a damaged supernet checkpoint (no 'model')",
        tmp_path / "half.pt": NOT_ZIP,  # a copy cut short (torch's reader says "[Errno 22] Invalid argument")
    }
    torch.save(trained.state_dict(), tmp_path / "weights.pt")  # a plain state dict is not a checkpoint
    save_checkpoint(tmp_path / "good.pt", trained)
    doc = read_checkpoint(tmp_path / "good.pt")
    del doc["model"]
    torch.save(doc, tmp_path / "damaged.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    for path, reason in cases.items():
        with pytest.raises(SupernetError) as exc:
            load_supernet(path, trained.space)
        assert one_line(exc) == f"{path}: {reason}"


def test_weights_that_do_not_fit_are_refused_in_one_line(trained: Supernet, tmp_path: Path) -> None:
    path = tmp_path / "supernet.pt"
    save_checkpoint(path, trained)
    doc = read_checkpoint(path)
    doc["model"]["banks.1.t0"] = doc["model"]["banks.1.t0"][:1]
    torch.save(doc, path)
    with pytest.raises(SupernetError) as exc:
        load_supernet(path, trained.space)
    assert one_line(exc) == (f"{path}: its weights do not fit the supernet of {trained.space.file} (size mismatch "
                             f"for banks.1.t0: copying a param with shape torch.Size([1]) from checkpoint, the shape "
                             f"in current model is torch.Size([8]).)")


def test_a_failed_write_leaves_the_previous_checkpoint(trained: Supernet, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "supernet.pt"
    save_checkpoint(path, trained, train={"epoch": 1})
    good = path.read_bytes()
    real_save, real_fsync = torch.save, os.fsync

    def save_half_then_die(obj, f, *args, **kwargs):
        real_save({"format": FORMAT}, f)  # some bytes out, then the process is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, trained, train={"epoch": 2})
    monkeypatch.setattr(torch, "save", real_save)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the temporary file is written, then syncing it fails
    with pytest.raises(OSError):
        save_checkpoint(path, trained, train={"epoch": 3})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.yaml", "supernet.pt"]
    assert read_checkpoint(path)["train"] == {"epoch": 1}
    save_checkpoint(path, trained, train={"epoch": 4})
    assert read_checkpoint(path)["train"] == {"epoch": 4}
