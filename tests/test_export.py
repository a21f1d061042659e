"""Export: the standalone .py, TorchScript and ONNX files reproduce the toolkit's network with the same
weights; names written into code are checked identifiers; weights files are checked key by key.
The command line's export is in tests/cli/test_cli_export.py; shared helpers in export_helpers.py."""
from __future__ import annotations

import ast
import dataclasses
import runpy
import sys
import warnings
from pathlib import Path

import pytest
import torch

from export_helpers import (CASES, REFERENCES, SPACES, assert_same, cached_space, example, import_file, load_case,
                            randomize_, seeded_build, shapes)
from nas.builder import build
from nas.cost import CostModel
from nas.export import (ExportError, class_name_for, export, export_onnx, export_python, export_torchscript,
                        load_weights, python_source, save_weights, standalone_model, unit_rows, weights_path)
from nas.ops import ACTIVATIONS, POOLS, SE_GATES, op_names, standalone_pieces
from nas.ops.sandglass import Sandglass
from nas.space import encode, load_space, plan

COSTS = CostModel()  # shared across tests: the header's params and MACs come from cached units


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
    space = cached_space(str(SPACES / "sandglass.yaml"))
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
