"""`nas supernet eval` and `nas supernet export`: what they print, the space the checkpoint records, and
one-line refusals (exit 2) of missing files, foreign checkpoints and architectures outside the space."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from nas.cli import main
from nas.space import encode, load_space, sample, write_fixed
from nas.supernet import Supernet, SubnetEvaluator, load_supernet, save_checkpoint

from subnet_helpers import TINY_SUPERNET_SPACE, tiny_checkpoint

CALIB = 64


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("supernet"))


@pytest.fixture(scope="module")
def pick(files, tmp_path_factory):
    """A fixed architecture of the tiny space, its arch, and the evaluator's scores for it."""
    space_file, checkpoint = files
    supernet = load_supernet(checkpoint, load_space(space_file))[0]
    arch = sample(supernet.space, 2)
    path = tmp_path_factory.mktemp("arch") / "pick.yaml"
    write_fixed(supernet.space, arch, path, name="pick")
    evaluator = SubnetEvaluator(supernet, "digits", calib_images=CALIB, device="cpu")
    return path, arch, evaluator


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_prints_top1_and_log_loss(files, pick, capsys) -> None:
    _, checkpoint = files
    path, arch, evaluator = pick
    code, out, _ = _run(capsys, "supernet", "eval", str(path), "--supernet", str(checkpoint),
                        "--calib-images", str(CALIB), "--device", "cpu")
    score = evaluator.score(arch)
    res = evaluator.supernet.plan(arch).resolution
    assert code == 0
    first, second = out.strip().splitlines()
    assert re.fullmatch(rf"pick: top-1 {score.top1:.4f}, log-loss {score.log_loss:.4f} on the held-out images of "
                        rf"digits \({res}x{res}, batch norms recalibrated, \d+\.\d\d s\)", first)
    assert second == f"arch: {encode(evaluator.space, arch)}"


def test_eval_json_and_without_recalibration(files, pick, capsys) -> None:
    space_file, checkpoint = files
    path, arch, evaluator = pick
    for flags, recalibrate in (((), True), (("--no-recalibrate",), False)):
        code, out, _ = _run(capsys, "supernet", "eval", str(path), "--supernet", str(checkpoint), "--space",
                            str(space_file), "--calib-images", str(CALIB), "--device", "cpu", "--json", *flags)
        info = json.loads(out)
        score = evaluator.score(arch, recalibrate)
        assert code == 0
        assert (info["top1"], info["log_loss"], info["recalibrated"]) == (score.top1, score.log_loss, recalibrate)
        assert (info["name"], info["data"], info["arch"]) == ("pick", "digits", encode(evaluator.space, arch))


def test_export_writes_the_module_and_weights(files, pick, capsys, tmp_path) -> None:
    _, checkpoint = files
    path, arch, evaluator = pick
    out_dir = tmp_path / "export"
    code, out, _ = _run(capsys, "supernet", "export", str(path), "--supernet", str(checkpoint), "--out", str(out_dir),
                        "--calib-images", str(CALIB), "--device", "cpu", "--class-name", "Picked")
    res = evaluator.supernet.plan(arch).resolution
    score = evaluator.score(arch)
    lines = out.strip().splitlines()
    assert code == 0 and sorted(p.name for p in out_dir.iterdir()) == ["model.py", "weights.pt"]
    assert lines[0] == f"wrote {out_dir / 'model.py'} (py, class Picked, {res}x{res})"
    assert lines[1] == (f"wrote {out_dir / 'weights.pt'} (state_dict cut from {checkpoint}, batch norms "
                        f"recalibrated; load with torch.load(..., weights_only=True))")
    assert re.fullmatch(rf"held-out top-1 {score.top1:.4f}, log-loss {score.log_loss:.4f}; the module's outputs "
                        r"differ from the supernet's by at most \d\.\de[-+]\d\d", lines[2])
    assert "class Picked(Network):" in (out_dir / "model.py").read_text()


def test_missing_files_are_refused_in_one_line(files, pick, capsys, tmp_path) -> None:
    space_file, checkpoint = files
    path, _, _ = pick
    for argv, message in [
        ((str(path), "--supernet", str(tmp_path / "none.pt")), f"{tmp_path / 'none.pt'}: no such supernet checkpoint"),
        ((str(tmp_path / "none.yaml"), "--supernet", str(checkpoint)), f"{tmp_path / 'none.yaml'}: no such file"),
    ]:
        code, _, err = _run(capsys, "supernet", "eval", *argv)
        assert (code, err) == (2, f"error: {message}\n")
    code, _, err = _run(capsys, "supernet", "eval", str(path), "--supernet", str(space_file))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {space_file}: not a readable supernet checkpoint (not the zip archive torch.save writes")


def test_a_checkpoint_whose_space_file_is_gone_needs_space(files, pick, capsys, tmp_path) -> None:
    space_file, _ = files
    path, _, _ = pick
    gone = tmp_path / "gone.yaml"
    shutil.copy(space_file, gone)
    checkpoint = tmp_path / "orphan.pt"
    save_checkpoint(checkpoint, Supernet(load_space(gone)))
    gone.unlink()
    code, _, err = _run(capsys, "supernet", "eval", str(path), "--supernet", str(checkpoint))
    assert code == 2
    assert err == f"error: {checkpoint}: the space it was trained on ({gone}) is not there; give the space file " \
                  f"(--space)\n"
    code, out, _ = _run(capsys, "supernet", "eval", str(path), "--supernet", str(checkpoint), "--space",
                        str(space_file), "--calib-images", str(CALIB), "--device", "cpu")
    assert code == 0 and out.startswith("pick: top-1 ")


def test_a_foreign_checkpoint_and_an_architecture_outside_the_space_are_refused(files, pick, capsys,
                                                                                  tmp_path) -> None:
    space_file, checkpoint = files
    path, _, _ = pick
    other = tmp_path / "other.yaml"
    other.write_text(TINY_SUPERNET_SPACE.replace("width: [8, 16]", "width: [8, 24]").replace("tinysuper", "other"))
    foreign = tmp_path / "foreign.pt"
    save_checkpoint(foreign, Supernet(load_space(other)))
    code, _, err = _run(capsys, "supernet", "export", str(path), "--supernet", str(foreign), "--space",
                        str(space_file), "--out", str(tmp_path / "never"))
    assert code == 2 and not (tmp_path / "never").exists()
    assert re.fullmatch(rf"error: {re.escape(str(foreign))}: made for space 'other' \({re.escape(str(other))}, "
                        rf"fingerprint \w+\), not for {re.escape(str(space_file))} \(fingerprint \w+\); train a "
                        rf"supernet for this space\n", err)

    outside = tmp_path / "outside.yaml"
    outside.write_text(re.sub(r"kernel: \d, expand", "kernel: 7, expand", path.read_text()))  # blocks, not stem
    code, _, err = _run(capsys, "supernet", "eval", str(outside), "--supernet", str(checkpoint))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.fullmatch(rf"error: {re.escape(str(space_file))}: {re.escape(str(outside))}: {re.escape(str(outside))} "
                        r"is not a point of this space: s1\.b0\.kernel = 7 is not one of \[3, 5\]\n", err)
