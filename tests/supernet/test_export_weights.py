"""Export with weights: a subnet as a standalone .py plus its state_dict cut from the supernet with
recalibrated batch norms computes what the supernet computes for it; `nas train --weights` fine-tunes it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from nas import api
from nas.cli import main
from nas.space import encode, sample, write_fixed
from nas.supernet import SubnetEvaluator
from nas.train import train


CALIB = 64


def _fixed(supernet, seed: int, folder: Path, name: str = "pick") -> tuple[Path, dict]:
    arch = dict(sample(supernet.space, seed))
    path = folder / f"{name}.yaml"
    write_fixed(supernet.space, arch, path, name=name)
    return path, arch


def _load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"exported_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 3])
def test_exported_module_and_weights_equal_the_supernets_subnet(files, supernet, tmp_path, seed) -> None:
    space_file, checkpoint = files
    arch_file, arch = _fixed(supernet, seed, tmp_path)
    result = api.supernet_export(arch_file, checkpoint, tmp_path / "out", calib_images=CALIB, device="cpu")
    assert (result.model, result.weights) == (tmp_path / "out" / "model.py", tmp_path / "out" / "weights.pt")
    assert result.class_name == "Pick" and result.max_abs_diff <= 1e-5

    module = _load_module(result.model)
    model = module.build_model(num_classes=10)
    model.load_state_dict(torch.load(result.weights, weights_only=True), strict=True)
    model.eval()

    # The supernet itself, run with the same recalibrated statistics in place of its shared ones.
    evaluator = SubnetEvaluator(supernet, "digits", calib_images=CALIB, device="cpu")
    stats = evaluator.statistics(arch)
    net_plan = supernet.plan(arch)
    x = evaluator.images(net_plan.resolution)[1]
    skeleton = supernet.skeleton(net_plan).eval()
    with torch.no_grad():
        expected = functional_call(skeleton, {**supernet.weights(arch, net_plan), **stats}, (x,))
        got = model(x)
    assert (got - expected).abs().max().item() <= 1e-5
    state = torch.load(result.weights, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in stats.items())
    assert result.score.top1 == evaluator.score(arch).top1
    assert result.score.top1 == int((got.argmax(1) == evaluator.images(net_plan.resolution)[2]).sum()) / len(x)


def test_fine_tuning_starts_from_the_exported_weights(files, supernet, tmp_path) -> None:
    space_file, checkpoint = files
    arch_file, arch = _fixed(supernet, 5, tmp_path)
    result = api.supernet_export(arch_file, checkpoint, tmp_path / "out", calib_images=CALIB, device="cpu")
    start = torch.load(result.weights, weights_only=True)
    loaded = {}

    def load(model):
        model.load_state_dict(start, strict=True)
        loaded.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    tuned = train(supernet.space, arch, "digits", 1, lr=1e-9, batch_size=256, device="cpu", start_from=load)
    after = tuned.model.state_dict()
    weights = [k for k in start if k.endswith("weight") and start[k].dim() == 4]
    assert weights and all(torch.equal(loaded[k], start[k]) for k in start)
    assert all((after[k] - start[k]).abs().max().item() < 1e-6 for k in weights)  # lr 1e-9 moves nothing


def test_nas_train_weights_fine_tunes_and_refuses_another_architecture(files, supernet, tmp_path, capsys) -> None:
    space_file, checkpoint = files
    arch_file, _ = _fixed(supernet, 5, tmp_path)
    assert main(["supernet", "export", str(arch_file), "--supernet", str(checkpoint), "--out", str(tmp_path / "out"),
                 "--calib-images", str(CALIB), "--device", "cpu"]) == 0
    capsys.readouterr()
    weights = tmp_path / "out" / "weights.pt"
    assert main(["train", str(arch_file), "--data", "digits", "--epochs", "1", "--batch-size", "256",
                 "--weights", str(weights), "--quiet", "--device", "cpu"]) == 0
    assert f"(fine-tuned from {weights}, 1438 trained on, 1 epoch, " in capsys.readouterr().out

    other_file, other = _fixed(supernet, 6, tmp_path, "other")
    assert encode(supernet.space, other) != encode(supernet.space, sample(supernet.space, 5))
    assert main(["train", str(other_file), "--data", "digits", "--epochs", "1", "--weights", str(weights),
                 "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {weights}: does not fit other ({other_file}): ")
