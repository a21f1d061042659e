"""`nas export`: the format follows the suffix, weights load into every format, and bad input is one
line with exit code 2."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from export_helpers import SPACES, assert_same, example, import_file, randomize_, seeded_build
from nas import cli
from nas.export import save_weights
from nas.space import load_space


def test_cli_export_py(all_ops_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "net.py"
    assert cli.main(["export", str(all_ops_file), "--out", str(out), "--num-classes", "7",
                     "--class-name", "Tiny"]) == 0
    assert capsys.readouterr().out == f"wrote {out} (py, class Tiny, all-ops, 7 classes)\n"
    model = import_file(out).build_model()
    assert type(model).__name__ == "Tiny"
    assert model.eval()(example(load_space(all_ops_file), 32, 1)).shape == (1, 7)


def test_cli_export_formats_from_suffix(all_ops_file: Path, tmp_path: Path, capsys) -> None:
    space = load_space(all_ops_file)
    theirs = randomize_(seeded_build(space), seed=2).eval()
    weights = save_weights(theirs, tmp_path / "w.pth")
    ts, py = tmp_path / "net.ts", tmp_path / "net.py"
    assert cli.main(["export", str(all_ops_file), "--out", str(ts), "--weights", str(weights)]) == 0
    assert cli.main(["export", str(all_ops_file), "--out", str(py), "--weights", str(weights)]) == 0
    assert capsys.readouterr().out == (
        f"wrote {ts} (torchscript, all-ops, 10 classes, with the weights)\n"
        f"wrote {py} (py, class AllOps, all-ops, 10 classes)\n"
        f"wrote {tmp_path / 'net.pth'} (state_dict; load with torch.load(..., weights_only=True))\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(ts))
    x = example(space)
    with torch.no_grad():
        assert_same(scripted(x), theirs(x))
    assert torch.equal(torch.load(tmp_path / "net.pth", weights_only=True)["head.2.classifier.0.weight"],
                       theirs.state_dict()["head.2.classifier.0.weight"])


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}/m.bin"], "{tmp}/m.bin: cannot tell the format from the suffix '.bin'; give --format py, "
                               "torchscript or onnx, or use .py, .pt, .ts or .onnx"),
    (["--out", "{tmp}/m.onnx", "--class-name", "Net"], "a class name applies to the py format only, not onnx"),
    (["--out", "{tmp}/m.py", "--class-name", "my net"],
     "class name 'my net' is not a Python identifier (ASCII letters, digits and _, not starting with a digit)"),
    (["--out", "{tmp}/m.py", "--weights", "{tmp}/none.pth"], "{tmp}/none.pth: no such weights file"),
])
def test_cli_errors_are_one_line(argv: list[str], message: str, all_ops_file: Path, tmp_path: Path, capsys) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(["export", str(all_ops_file), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {message.replace('{tmp}', str(tmp_path))}\n"
    assert captured.out == "" and list(tmp_path.iterdir()) == []


def test_cli_refuses_a_space(tmp_path: Path, capsys) -> None:
    path = SPACES / "mobilenet_v3.yaml"
    assert cli.main(["export", str(path), "--out", str(tmp_path / "m.py")]) == 2
    assert capsys.readouterr().err == (f"error: {path}: not a fixed architecture: 46 decisions left (e.g. res); "
                                       "pick one with `nas arch sample`\n")


def test_cli_num_classes_must_be_positive(all_ops_file: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", str(all_ops_file), "--out", str(tmp_path / "m.py"), "--num-classes", "0"])
    assert exit_.value.code == 2
    assert "argument --num-classes: expected a positive integer, got 0" in capsys.readouterr().err
