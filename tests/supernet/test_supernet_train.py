"""Supernet training (nas.supernet.train, `nas supernet train`): the sandwich step, determinism, resume
after a stop, Ctrl-C or SIGKILL, refusals. (Named test_supernet_train.py: tests/test_train.py already
holds the module name test_train, and test folders are not packages.)"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.cli import main
from nas.cost import CostModel
from nas.data import prepared
from nas.errors import TrainingError
from nas.space import decisions, load_space
from nas.supernet import Supernet, load_supernet, save_checkpoint
from nas.supernet.extremes import extreme_archs
from nas.supernet.train import train_supernet
from roots import ROOT

TINY = """\
name: tiny
resolution: [12, 16]
num_classes: 10
stem: {out: 8, kernel: 3, stride: 2, act: relu6}
stages:
  - {stride: 2, depth: [1, 2], width: [8, 16], block: &b {op: [sandglass, inverted_residual], kernel: [3, 5], expand: [2, 4], act: relu6}}
  - {stride: 2, depth: 1, width: [16, 24], block: *b}
head: {pool: avg, dropout: 0.1}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(TINY)
    return load_space(str(path))


def _digits(n_train: int) -> dict:
    """Digits at both resolutions of the tiny space, the training split cut to its first `n_train` images."""
    def cut(res: int):
        d = prepared("digits", res, 3)
        return replace(d, x_train=d.x_train[:n_train].clone(), y_train=d.y_train[:n_train].clone())
    return {12: cut(12), 16: cut(16)}


@pytest.fixture(scope="module")
def digits160():
    return _digits(160)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """3 classes x 10 digit images as 8x8 PNGs: 24 to train on, 6 held out."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("images")
    d = load_digits()
    for label in range(3):
        (root / str(label)).mkdir()
        for i, img in enumerate(d.images[d.target == label][:10]):
            Image.fromarray((img * 255 / 16).astype(np.uint8)).save(root / str(label) / f"{i}.png")
    return root


def _stop_after(steps: int):
    """A progress wrapper that ends the loop after `steps` steps, as a killed process would."""
    return lambda r: itertools.islice(r, steps)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_extreme_archs_are_the_most_and_fewest_macs(tiny) -> None:
    """Checked against every architecture of the space (8192). The ends are not the all-max / all-min
    choices (op names sort "inverted_residual" < "sandglass"; sandglass's expand is a reduction ratio)."""
    cost = CostModel()
    largest, smallest = extreme_archs(tiny, cost)
    macs = [cost.macs_params(tiny, dict(zip([d.name for d in decisions(tiny)], values)))[0]
            for values in itertools.product(*(d.choices for d in decisions(tiny)))]
    assert len(macs) == 8192
    assert cost.macs_params(tiny, largest)[0] == max(macs)
    assert cost.macs_params(tiny, smallest)[0] == min(macs)
    assert largest["res"] == 16 and smallest["res"] == 12
    assert largest["s2.b0.op"] == "inverted_residual" and smallest["s2.b0.op"] == "sandglass"


def test_one_step_trains_the_largest_and_the_smallest(tiny, digits160, tmp_path) -> None:
    """With no random subnets, weights only the smallest uses (its sandglass blocks) still move: the
    distillation pass reaches them."""
    result = train_supernet(tiny, digits160, tmp_path / "s.pt", epochs=1, batch_size=32, n_random=0,
                            progress=_stop_after(1), checkpoint_every=0)
    assert result.steps == 1
    torch.manual_seed(0)
    start = Supernet(replace(tiny, num_classes=10))
    trained = result.supernet
    for arch in (result.largest, result.smallest):
        before, after = start.weights(arch), trained.weights(arch)
        moved = [k for k in before if before[k].dim() == 4 and not torch.equal(before[k], after[k])]
        assert len(moved) == sum(1 for k in before if before[k].dim() == 4), arch
    large_storage = {t.untyped_storage().data_ptr() for t in trained.weights(result.largest).values()}
    own = [k for k, t in trained.weights(result.smallest).items() if t.untyped_storage().data_ptr() not in large_storage]
    assert any(".conv" in k or "block" in k for k in own), own  # the smallest has weights of its own ...
    before, after = start.weights(result.smallest), trained.weights(result.smallest)
    assert all(not torch.equal(before[k], after[k]) for k in own if before[k].dim() == 4)  # ... and they moved


def test_loss_decreases_over_epochs(tiny, tmp_path) -> None:
    result = train_supernet(tiny, _digits(320), tmp_path / "s.pt", epochs=4, batch_size=32)
    assert result.steps == 40 and len(result.loss) == 4 and len(result.distill) == 4
    assert all(b < a for a, b in zip(result.loss, result.loss[1:])), result.loss
    assert result.loss[-1] < 0.5 * result.loss[0], result.loss


def test_resumed_runs_end_with_the_weights_of_an_unbroken_run(tiny, digits160, tmp_path) -> None:
    """2 epochs of 5 steps in one go; stopped after epoch 1 and resumed; stopped mid-epoch 2 and resumed:
    the same weights, running statistics, optimiser state and losses, bit for bit. Another seed differs."""
    settings = dict(epochs=2, batch_size=32)
    whole = train_supernet(tiny, digits160, tmp_path / "whole.pt", **settings)
    for stop, name in ((5, "epoch.pt"), (7, "mid.pt")):
        first = train_supernet(tiny, digits160, tmp_path / name, **settings, progress=_stop_after(stop),
                               checkpoint_every=0 if stop == 7 else 60)
        assert first.steps == stop
        resumed = train_supernet(tiny, digits160, tmp_path / name, **settings)
        assert resumed.resumed_from_step == stop and resumed.steps == 10
        assert _same_weights(whole.supernet.state_dict(), resumed.supernet.state_dict())
        assert (resumed.loss, resumed.distill) == (whole.loss, whole.distill)
        a, b = (torch.load(tmp_path / n, weights_only=True)["train"]["optimizer"]["state"] for n in ("whole.pt", name))
        assert a.keys() == b.keys() and all(torch.equal(a[i]["momentum_buffer"], b[i]["momentum_buffer"]) for i in a)
    other = train_supernet(tiny, digits160, tmp_path / "other.pt", **settings, seed=1)
    assert not _same_weights(whole.supernet.state_dict(), other.supernet.state_dict())


def test_checkpoint_loads_with_weights_only(tiny, digits160, tmp_path) -> None:
    out = tmp_path / "s.pt"
    result = train_supernet(tiny, digits160, out, epochs=1, batch_size=64, lr=0.05, seed=3)
    doc = torch.load(out, weights_only=True)
    train = doc["train"]
    assert (train["step"], train["total_steps"], train["steps_per_epoch"]) == (3, 3, 3)
    assert {k: train["settings"][k] for k in ("epochs", "batch_size", "lr", "seed", "n_random", "data", "n_train")} \
        == {"epochs": 1, "batch_size": 64, "lr": 0.05, "seed": 3, "n_random": 2, "data": "digits", "n_train": 160}
    assert train["loss"] == list(result.loss) and train["largest"] == dict(result.largest)
    supernet, _ = load_supernet(out, tiny)
    assert _same_weights(supernet.state_dict(), result.supernet.state_dict())


def test_other_settings_are_refused_in_one_line(tiny, digits160, tmp_path) -> None:
    out = tmp_path / "s.pt"
    train_supernet(tiny, digits160, out, epochs=1, batch_size=32, progress=_stop_after(2), checkpoint_every=0)
    with pytest.raises(TrainingError) as info:
        train_supernet(tiny, digits160, out, epochs=1, batch_size=32, lr=0.05)
    assert str(info.value) == (f"{out}: its training was started with --lr 0.1, this run has 0.05; rerun with the "
                               f"checkpoint's settings to resume it, or choose another --out")
    with pytest.raises(TrainingError, match=r"started with --epochs 1, this run has 2;"):
        train_supernet(tiny, digits160, out, epochs=2, batch_size=32)
    with pytest.raises(TrainingError, match=r"started with training images 160, this run has 120;"):
        train_supernet(tiny, _digits(120), out, epochs=1, batch_size=32)


def test_a_non_finite_loss_names_the_step(tiny, digits160, tmp_path) -> None:
    data = {r: replace(d, x_train=torch.full_like(d.x_train, float("nan"))) for r, d in digits160.items()}
    with pytest.raises(TrainingError) as info:
        train_supernet(tiny, data, tmp_path / "s.pt", epochs=1, batch_size=32)
    assert str(info.value) == "training diverged: the largest subnet's loss is nan at epoch 1, step 1; " \
                              "try a lower learning rate"


def test_cli_refuses_a_checkpoint_of_another_space(tiny, image_dir, tmp_path, write_yaml, capsys) -> None:
    other = load_space(str(write_yaml(TINY.replace("name: tiny", "name: other").replace("[16, 24]", "[16, 32]"),
                                      "other.yaml")))
    out = tmp_path / "other.pt"
    save_checkpoint(out, Supernet(replace(other, num_classes=3)))
    code = main(["supernet", "train", "--space", str(tiny.file), "--data", str(image_dir), "--epochs", "1",
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {out}: made for space 'other' ({other.file}, fingerprint ")
    assert err.endswith("; train a supernet for this space\n") and err.count("\n") == 1


# Long enough that the run cannot finish between reaching step 2 and the Ctrl-C that follows it.
CLI_EPOCHS, CLI_STEPS = 40, 120  # 3 steps an epoch: 24 images, batch 8


def _cli_args(tiny, image_dir: Path, out: Path) -> list[str]:
    return ["supernet", "train", "--space", str(tiny.file), "--data", str(image_dir), "--epochs", str(CLI_EPOCHS),
            "--batch-size", "8", "--out", str(out), "--threads", "1", "--quiet", "--checkpoint-every", "0"]


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # SIGINT back to its default in the child: a shell's background job (nohup ... &) inherits it ignored,
    # and Python then never turns Ctrl-C into KeyboardInterrupt, so the run would simply finish.
    return subprocess.Popen([sys.executable, "-m", "nas", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_step(out: Path, proc: subprocess.Popen, step: int) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists():
            done = torch.load(out, weights_only=True)["train"]["step"]
            if done >= step:
                return done
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach step {step} (exit code {proc.poll()})")


def test_cli_resumes_after_ctrl_c_and_sigkill(tiny, image_dir, tmp_path, capsys) -> None:
    """Ctrl-C: exit 130, one line saying how to resume, the checkpoint at the step it names. SIGKILL of the
    resumed run: its last checkpoint is intact, and the same command (in-process here) finishes the run
    with the weights of a run that was never stopped."""
    out = tmp_path / "s.pt"
    args = _cli_args(tiny, image_dir, out)
    proc = _start(args)
    _wait_for_step(out, proc, 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    stopped = torch.load(out, weights_only=True)["train"]["step"]
    assert proc.returncode == 130 and stdout == ""
    assert stderr == f"interrupted: stopped after step {stopped} of {CLI_STEPS}; {out} holds it: run the same command " \
                     f"again to resume\n"
    proc = _start(args)
    killed_at = _wait_for_step(out, proc, stopped + 2)
    proc.kill()
    proc.communicate(timeout=60)
    assert killed_at < CLI_STEPS
    assert main(args) == 0
    resumed_at = int(capsys.readouterr().out.split("resumed from step ")[1].split(",")[0])
    assert killed_at <= resumed_at < CLI_STEPS
    unbroken = train_supernet(tiny, str(image_dir), tmp_path / "unbroken.pt", epochs=CLI_EPOCHS, batch_size=8)
    assert unbroken.steps == CLI_STEPS
    assert _same_weights(torch.load(out, weights_only=True)["model"], unbroken.supernet.state_dict())
