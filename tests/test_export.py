"""Export: the standalone .py, TorchScript and ONNX files reproduce the toolkit's network with the same
weights; names written into code are checked identifiers; weights files are checked key by key."""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import runpy
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from nas import cli
from nas.builder import build
from nas.cost import CostModel
from nas.export import (ExportError, class_name_for, export, export_onnx, export_python, export_torchscript,
                        load_weights, python_source, save_weights, standalone_model, unit_rows, weights_path)
from nas.ops import ACTIVATIONS, POOLS, SE_GATES, get_op, op_names, standalone_pieces
from nas.ops.sandglass import Sandglass
from nas.space import encode, load_space, plan, sample

from roots import ROOT

SPACES = ROOT / "search_spaces"
REFERENCES = sorted((SPACES / "reference").glob("*.yaml"))
COSTS = CostModel()  # shared across tests: the header's params and MACs come from cached units



def all_ops_yaml() -> str:
    """One small net with every registered stage op's example (`Op.example`: its activations, gates and
    layouts), a 1x1 conv between examples where widths differ, a max-pool stem and a full head."""
    stages, width = [], 24
    for name in op_names(stage_only=True):
        example = get_op(name).example
        assert example is not None, f"operator {name!r} has no example"
        if example.cin != width:
            stages.append({"stride": 1, "depth": 1, "width": example.cin, "block": {"op": "conv_bn_act", "kernel": 1}})
        stages += [dict(stage) for stage in example.stages]
        width = example.stages[-1]["width"]
    return yaml.safe_dump({
        "name": "all-ops", "resolution": 64, "num_classes": 10, "norm": {"eps": 0.001, "momentum": 0.01},
        "stem": {"out": 24, "kernel": 3, "stride": 2, "act": "relu", "pool": "max"}, "stages": stages,
        "head": {"conv": {"out": 160, "act": "silu"}, "pool": "mean", "hidden": {"out": 64, "act": "relu"},
                 "bias": False},
    }, sort_keys=False)


ALL_OPS = all_ops_yaml()

CASES = ([p.stem for p in REFERENCES] + ["all_ops"]
         + [f"sandglass-seed{s}" for s in (0, 1, 2)] + [f"mobilenet_v3-seed{s}" for s in (0, 1)]
         + [f"mobilenet_v4-seed{s}" for s in (0, 1)])


@pytest.fixture(scope="module")
def all_ops_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spaces") / "all_ops.yaml"
    path.write_text(ALL_OPS, encoding="utf-8")
    return path


@lru_cache(maxsize=None)
def _space(path: str):
    return load_space(path)


def load_case(name: str, all_ops_file: Path):
    """(space, arch) of a test case: a reference net, the all-ops net, or a seeded sample of a space."""
    if name == "all_ops":
        return _space(str(all_ops_file)), None
    if "-seed" in name:
        stem, seed = name.split("-seed")
        space = _space(str(SPACES / f"{stem}.yaml"))
        return space, sample(space, int(seed))
    return _space(str(SPACES / "reference" / f"{name}.yaml")), None


def import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"exported_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seeded_build(space, arch=None) -> torch.nn.Module:
    """`build` with fixed conv weights (they come from torch's global RNG), so outputs, and the size check
    in `assert_same`, do not depend on which tests ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build(space, arch)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Make BatchNorm statistics and affine terms and every bias non-trivial, so that a wrong eps, a
    missing bias or a swapped layer changes the outputs (fresh init leaves BN an identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("bias", "running_mean")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.dim() == 1:  # BatchNorm weight
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() == 2:  # Linear weight: unit-scale outputs, so that absolute tolerances mean something
                t.copy_(torch.randn(t.shape, generator=g) / t.shape[1] ** 0.5)
    return model


def assert_same(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal up to float rounding, with the absolute tolerance scaled to the outputs' size."""
    assert theirs.abs().max() > 0.1  # a vanishing output would hide any difference
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=rtol * theirs.abs().max().item())


def example(space, size: int = 64, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, space.in_channels, size, size, generator=torch.Generator().manual_seed(seed))


def shapes(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


# ---- the standalone .py ----

@pytest.mark.parametrize("case", CASES)
def test_python_export_matches_toolkit(case: str, all_ops_file: Path, tmp_path: Path) -> None:
    space, arch = load_case(case, all_ops_file)
    path = export_python(space, arch, tmp_path / "model.py", costs=COSTS)
    text = path.read_text(encoding="utf-8")
    assert imported_modules(text) == {"__future__", "torch"}
    module = import_file(path)

    theirs = randomize_(seeded_build(space, arch)).eval()
    ours = module.build_model().eval()
    assert type(ours).__name__ == class_name_for(space)
    assert shapes(ours) == shapes(theirs)  # same keys, order and shapes: strict loads work both ways
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = example(space)
    with torch.no_grad():
        assert_same(ours(x), theirs(x))

    cost = COSTS.cost(space, arch)
    c, h, w = plan(space, arch or {}).input_shape
    assert f"# {cost.params:,} params, {cost.macs:,} MACs (conv + linear) at {c}x{h}x{w}, {space.num_classes} classes" in text
    assert f"# arch:   {encode(space, arch or {})}\n" in text
    assert f"# source: {space.file}\n" in text
    units = next(n.value for n in ast.parse(text).body if isinstance(n, ast.Assign) and n.targets[0].id == "UNITS")
    assert ast.literal_eval(units) == module.UNITS  # plain literals only
    assert set(module.OPS) == {op for _, op, _ in module.UNITS}  # only the operators it uses


def test_cases_cover_every_operator_and_setting(all_ops_file: Path) -> None:
    configs = []
    for name in CASES:
        space, arch = load_case(name, all_ops_file)
        configs += [u.key.config for u in plan(space, arch or {}).units]
    exportable = {op for _, op, _ in unit_rows(load_space(all_ops_file))} | {"max_pool", "global_pool", "classifier"}
    assert {c.op for c in configs} == set(op_names()) == exportable
    assert {c.act for c in configs if c.op in op_names(stage_only=True)} == set(ACTIVATIONS)
    assert {c.se_gate for c in configs if c.se} == set(SE_GATES)
    assert {c.pool for c in configs if c.op == "global_pool"} == set(POOLS)
    assert {c.hidden > 0 for c in configs if c.op == "classifier"} == {True, False}
    assert {Sandglass.layout(c) for c in configs if c.op == "sandglass"} == {
        (True, True, False), (False, False, False), (False, True, False), (True, True, True)}
    assert any(c.op == "sandglass" and c.identity_mult < 1 and Sandglass.layout(c)[2] for c in configs)


def test_standalone_pieces_are_torch_only_and_match_the_toolkit(all_ops_file: Path) -> None:
    source = "\n\n".join(standalone_pieces(list(op_names())))
    assert imported_modules(source) == set() and "nas." not in source  # the exported file imports torch itself
    space = load_space(all_ops_file)
    ours, theirs = standalone_model(space).eval(), randomize_(seeded_build(space)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    with torch.no_grad():
        assert_same(ours(example(space)), theirs(example(space)))


def test_exported_file_runs_without_the_toolkit(all_ops_file: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = export_python(load_space(all_ops_file), None, tmp_path / "model.py", costs=COSTS)
    for name in ("nas", "proxies", "fvcore", "yaml", "optuna"):
        monkeypatch.setitem(sys.modules, name, None)  # importing any of these now fails
    namespace = runpy.run_path(str(path))
    assert namespace["build_model"](num_classes=7).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


def test_num_classes_changes_only_the_classifier_output(all_ops_file: Path, tmp_path: Path) -> None:
    space, arch = load_case("mobilenet_v3_small", all_ops_file)
    module = import_file(export_python(space, arch, tmp_path / "model.py", costs=COSTS))
    default, ten = shapes(module.build_model()), shapes(module.build_model(num_classes=10))
    changed = [(a, b) for a, b in zip(default, ten) if a != b]
    assert [k for k, _ in default] == [k for k, _ in ten]
    assert changed == [(("head.2.classifier.3.weight", (1000, 1024)), ("head.2.classifier.3.weight", (10, 1024))),
                       (("head.2.classifier.3.bias", (1000,)), ("head.2.classifier.3.bias", (10,)))]
    assert module.build_model(num_classes=10).eval()(example(space, batch=1)).shape == (1, 10)

    export(space, arch, "py", tmp_path / "ten.py", num_classes=10)
    ten_file = import_file(tmp_path / "ten.py")
    assert shapes(ten_file.build_model()) == ten
    assert "1000 classes" not in (tmp_path / "ten.py").read_text()


@pytest.mark.parametrize("name, expected", [
    ("mobilenet_v3_large", "MobilenetV3Large"), ("shufflenet_v2_x1_0", "ShufflenetV2X10"),
    ("all-ops", "AllOps"), ("3d.net-v2", "Net3dNetV2"), ("network", "NetworkNet"), ("list", "List"),
])
def test_derived_class_names(name: str, expected: str) -> None:
    space = load_space(REFERENCES[0])
    assert class_name_for(dataclasses.replace(space, name=name)) == expected


@pytest.mark.parametrize("name, problem", [
    ("my-net", "is not a Python identifier (ASCII letters, digits and _, not starting with a digit)"),
    ("3net", "is not a Python identifier (ASCII letters, digits and _, not starting with a digit)"),
    ("Nét", "is not a Python identifier (ASCII letters, digits and _, not starting with a digit)"),
    ("A\nimport os", "is not a Python identifier (ASCII letters, digits and _, not starting with a digit)"),
    ("", "is not a Python identifier (ASCII letters, digits and _, not starting with a digit)"),
    ("class", "is a Python keyword"),
    ("match", "is a Python keyword"),
    ("Network", "is already defined in the exported module"),
    ("build_model", "is already defined in the exported module"),
    ("UNITS", "is already defined in the exported module"),
    ("torch", "is already defined in the exported module"),
    ("dict", "would hide the Python builtin of that name"),
])
def test_bad_class_names_are_refused(name: str, problem: str, tmp_path: Path) -> None:
    space = load_space(REFERENCES[0])
    with pytest.raises(ExportError) as err:
        export_python(space, None, tmp_path / "model.py", class_name=name)
    assert str(err.value) == f"class name {name!r} {problem}"
    assert not (tmp_path / "model.py").exists()


def test_explicit_class_name(all_ops_file: Path, tmp_path: Path) -> None:
    module = import_file(export_python(load_space(all_ops_file), None, tmp_path / "m.py", class_name="TinyNet",
                                       costs=COSTS))
    assert isinstance(module.build_model(), module.TinyNet)
    assert isinstance(module.build_model(), module.Network)


def test_file_path_text_cannot_inject_code(tmp_path: Path) -> None:
    folder = tmp_path / "x\nimport os\n\u2028y"
    folder.mkdir()
    source = folder / "net.yaml"
    source.write_text(REFERENCES[0].read_text(encoding="utf-8"), encoding="utf-8")
    text = python_source(load_space(source), costs=COSTS)
    assert "import os" not in [line.strip() for line in text.splitlines()]
    assert "\u2028" not in text
    assert "# source: " + str(source).encode("unicode_escape").decode("ascii") + "\n" in text
    assert imported_modules(text) == {"__future__", "torch"}
    compile(text, "model.py", "exec")


def test_a_space_needs_an_arch(tmp_path: Path) -> None:
    space = _space(str(SPACES / "sandglass.yaml"))
    with pytest.raises(ExportError) as err:
        export_python(space, None, tmp_path / "m.py")
    assert str(err.value) == (f"{space.file}: not a fixed architecture: 111 decisions left (e.g. res); "
                              "give an arch or pick one with `nas arch sample`")


# ---- weights ----

def test_save_weights_loads_with_weights_only(tmp_path: Path) -> None:
    model = randomize_(seeded_build(load_space(REFERENCES[0])))
    path = save_weights(model, tmp_path / "w.pth")
    state = torch.load(path, weights_only=True)
    assert list(state) == list(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_py_export_with_weights(all_ops_file: Path, tmp_path: Path) -> None:
    space = load_space(all_ops_file)
    theirs = randomize_(seeded_build(space), seed=3).eval()
    source = save_weights(theirs, tmp_path / "trained.pt")
    out = export(space, None, "py", tmp_path / "best_model.py", weights=source)
    assert out == tmp_path / "best_model.py" and weights_path(out) == tmp_path / "best_model.pth"
    ours = import_file(out).build_model().eval()
    ours.load_state_dict(torch.load(tmp_path / "best_model.pth", weights_only=True), strict=True)
    with torch.no_grad():
        assert_same(ours(example(space)), theirs(example(space)))


def test_misfit_weights_name_the_file_and_first_key(all_ops_file: Path, tmp_path: Path) -> None:
    v1, v2 = (load_space(SPACES / "reference" / f"{n}.yaml") for n in ("mobilenet_v1", "mobilenet_v2"))
    v2_weights = save_weights(build(v2, init=False), tmp_path / "v2.pth")
    with pytest.raises(ExportError) as err:
        export(v1, None, "py", tmp_path / "v1.py", weights=v2_weights)
    assert str(err.value) == (f"{v2_weights}: does not fit mobilenet_v1 ({v1.file}): missing key "
                              "'blocks.0.dw.0.weight' (shape [32, 1, 3, 3])")
    assert not (tmp_path / "v1.py").exists() and not (tmp_path / "v1.pth").exists()

    with pytest.raises(ExportError) as err:
        export(v2, None, "py", tmp_path / "v2.py", weights=v2_weights, num_classes=10)
    assert str(err.value) == (f"{v2_weights}: does not fit mobilenet_v2 ({v2.file}): 'head.2.classifier.1.weight' "
                              "has shape [1000, 1280], the architecture needs [10, 1280]")

    state = build(v2, init=False).state_dict()
    with pytest.raises(ExportError) as err:
        export(v2, None, "onnx", tmp_path / "v2.onnx", weights={**state, "extra.weight": torch.zeros(1)})
    assert str(err.value) == f"the given state_dict: does not fit mobilenet_v2 ({v2.file}): unexpected key 'extra.weight'"


class _NotATensor:
    pass


@pytest.mark.parametrize("kind", ["text", "pickle", "checkpoint", "list", "missing"])
def test_unreadable_weights_are_one_line(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    if kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "pickle":
        torch.save({"a": _NotATensor()}, path)
    elif kind == "checkpoint":
        torch.save({"epoch": 3, "state_dict": {}}, path)
    elif kind == "list":
        torch.save([torch.zeros(1)], path)
    model = torch.nn.Linear(1, 1)
    with pytest.raises(ExportError) as err:
        load_weights(model, path)
    expected = {
        "text": f"{path}: not a state_dict that torch.load(weights_only=True) reads (Unsupported operand 110)",
        "pickle": f"{path}: not a state_dict that torch.load(weights_only=True) reads (Unsupported global: "
                  f"GLOBAL {__name__}._NotATensor was not an allowed global by default)",
        "checkpoint": f"{path}: expected a state_dict (names -> tensors); key 'epoch' holds int",
        "list": f"{path}: expected a state_dict (names -> tensors), got list",
        "missing": f"{path}: no such weights file",
    }[kind]
    assert str(err.value) == expected


# ---- TorchScript and ONNX ----

def test_torchscript_matches_at_any_input_size(all_ops_file: Path, tmp_path: Path) -> None:
    space = load_space(all_ops_file)
    theirs = randomize_(seeded_build(space), seed=5).eval()
    path = export_torchscript(space, None, tmp_path / "net.pt", weights=theirs.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(path))
    with torch.no_grad():
        for size, batch in ((64, 2), (96, 1)):
            x = example(space, size, batch)
            assert_same(scripted(x), theirs(x))


def test_onnx_matches_in_onnxruntime(all_ops_file: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    space = load_space(all_ops_file)
    theirs = randomize_(seeded_build(space), seed=7).eval()
    weights = save_weights(theirs, tmp_path / "w.pth")
    path = export_onnx(space, None, tmp_path / "net.onnx", weights=weights)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = example(space, 64, 1)
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert_same(torch.from_numpy(out), theirs(x), rtol=1e-4)


def test_export_rejects_unknown_formats_and_misplaced_options(tmp_path: Path) -> None:
    space = load_space(REFERENCES[0])
    with pytest.raises(ExportError, match=r"^unknown export format 'tflite'; allowed: py, torchscript, onnx$"):
        export(space, None, "tflite", tmp_path / "m.tflite")
    with pytest.raises(ExportError, match=r"^a class name applies to the py format only, not onnx$"):
        export(space, None, "onnx", tmp_path / "m.onnx", class_name="Net")
    with pytest.raises(ExportError, match=r"^num_classes must be a positive integer, got 0$"):
        export(space, None, "py", tmp_path / "m.py", num_classes=0)
    assert list(tmp_path.iterdir()) == []


# ---- the command line ----

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
