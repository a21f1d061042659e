"""An operator file can declare a new field and a new op by itself: a throwaway op with a new field
loads from YAML, validates, plans, builds, encodes/decodes, counts and exports, with nothing else edited;
and every operator file, shipped or added, registers its ops on import, in file order."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn

import nas.ops
from nas.builder import build
from nas.cost import CostModel
from nas.errors import SpaceError
from nas.export import export_python
from nas.ops import (Example, Field, Op, block_fields, declare_field, forget_field, get_op, number, op_names, register,
                     unregister)
from nas.ops._layers import conv_bn
from nas.space import decode, encode, load_space, plan, sample, unique_units
from proxies.flops import count_module


class ScaledConv(Op):
    """KxK conv + BN + act, times a constant gain (a toy op: the gain is a new field)."""

    name = "scaled_conv"
    short = "scv"
    fields = frozenset({"kernel", "act", "gain"})
    example = Example(16, ({"stride": 1, "depth": 1, "width": 16, "block": {"op": "scaled_conv", "gain": 2.0}},))

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, gain: float, norm: dict) -> None:
        super().__init__()
        self.conv = conv_bn(cin, cout, kernel, stride, norm, act)
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.gain


SPACE = """
name: toy
resolution: [32, 40]
num_classes: 10
stem: {out: 16}
stages:
  - {name: a, stride: 2, depth: [1, 2], width: [16, 24], block: {op: [scaled_conv, inverted_residual], expand: 2,
     kernel: [3, 5], gain: [0.5, 2.0]}}
head: {pool: avg}
"""


@pytest.fixture
def scaled_conv() -> Iterator[type[Op]]:
    declare_field(Field(name="gain", default=1.0, check=number(0, 4), key_short="gain", code="gn"))
    register(ScaledConv)
    try:
        yield ScaledConv
    finally:
        unregister("scaled_conv")
        forget_field("gain")


def test_a_new_op_and_field_work_end_to_end(scaled_conv, write_yaml, tmp_path: Path) -> None:
    space = load_space(write_yaml(SPACE))
    assert space.stages[0].blocks[0].choices["gain"] == (0.5, 2.0)
    arch = dict(sample(space, 0))
    arch.update({"res": 32, "a.depth": 2, "a.b0.op": "scaled_conv", "a.b0.gain": 2.0, "a.b0.kernel": 5})
    text = encode(space, arch)
    assert "b0=scv/k5/gn2" in text
    assert decode(space, text)["a.b0.gain"] == 2.0
    units = plan(space, arch).units
    assert "op=scaled_conv" in units[1].text and " gain=2 " in units[1].text
    assert {u.text for u in units} <= set(unique_units(space))

    model = build(space, arch).eval()
    x = torch.randn(1, 3, 32, 32)
    cost = CostModel().cost(space, arch)
    counted = count_module(model, (1, 3, 32, 32))
    assert (cost.macs, cost.params) == (counted.macs, counted.params)

    path = export_python(space, arch, tmp_path / "toy.py")
    spec = importlib.util.spec_from_file_location("toy_export", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ours = module.build_model().eval()
    ours.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), model(x))
    assert "class ScaledConv(nn.Module):" in path.read_text() and "Example(" not in path.read_text()


def test_a_bad_value_of_a_new_field_names_file_path_and_range(scaled_conv, write_yaml) -> None:
    path = write_yaml(SPACE.replace("gain: [0.5, 2.0]", "gain: [0.5, 9]"))
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert str(err.value) == f"{path}: stages[0].block.gain[1]: 9 is outside the allowed range (0, 4]"


def test_unregistered_fields_and_ops_are_gone(write_yaml) -> None:
    path = write_yaml(SPACE)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    # the allowed list is every declared block field (operator files add theirs), without 'gain'
    allowed = block_fields()
    assert allowed[:10] == ("op", "kernel", "expand", "hidden", "se", "act", "groups", "identity_mult", "se_ratio",
                            "se_gate") and "gain" not in allowed
    assert str(err.value) == f"{path}: stages[0].block.gain: unknown key; allowed: {', '.join(allowed)}"


def test_registration_checks_the_contract() -> None:
    class NoShort(ScaledConv):
        name, short = "no_short", ""

    class Undeclared(ScaledConv):
        name, short = "undeclared", "und"

    class SameShort(ScaledConv):
        name, short = "same_short", "ir"

    with pytest.raises(ValueError, match="^operator 'undeclared': unknown block field 'gain'"):
        register(Undeclared)
    declare_field(Field(name="gain", default=1.0, check=number(0, 4)))
    try:
        with pytest.raises(ValueError, match="^operator 'no_short': a stage op needs a short name"):
            register(NoShort)
        with pytest.raises(ValueError, match="^operator 'same_short': short name 'ir' is already used by "
                                             "'inverted_residual'$"):
            register(SameShort)
        with pytest.raises(ValueError, match="^block field 'gain' is already declared$"):
            declare_field(Field(name="gain", default=1.0))
    finally:
        forget_field("gain")
    assert isinstance(ScaledConv.__mro__[1](), nn.Module)


# ---- registration by file ----

def test_every_public_module_is_imported_and_registers_its_ops() -> None:
    ops_dir = Path(nas.ops.__file__).parent
    public = sorted(p.stem for p in ops_dir.glob("*.py") if not p.stem.startswith("_"))
    assert list(nas.ops._operator_modules()) == public == ["heads", "mobilenet", "mobilenet_v4", "sandglass",
                                                                   "shuffle"]
    for name in public:
        module = sys.modules[f"nas.ops.{name}"]
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Op)
                   and c.__module__ == module.__name__ and "name" in vars(c)]
        assert classes and all(get_op(c.name) is c for c in classes)
    assert {get_op(op).__module__ for op in op_names()} == {f"nas.ops.{name}" for name in public}


TOY_OP = '''
from nas.ops._base import Op
from nas.ops._registry import register


@register
class {cls}(Op):
    name, short, stage_op = "{name}", "{name}", False

    def forward(self, x):
        return x
'''


def test_a_new_operator_file_registers_itself_in_sorted_order(tmp_path: Path) -> None:
    """A copy of the package with two op files added, and no other edit: both register, in file order."""
    package = Path(nas.ops.__file__).parent.parent
    shutil.copytree(package, tmp_path / "nas", ignore=shutil.ignore_patterns("__pycache__"))
    for stem, cls in (("zz_last", "Last"), ("aa_first", "First")):
        (tmp_path / "nas" / "ops" / f"{stem}.py").write_text(TOY_OP.format(cls=cls, name=stem), encoding="utf-8")
    (tmp_path / "nas" / "ops" / "_private.py").write_text("raise RuntimeError('private modules are not imported')\n")
    script = "import nas.ops, nas.ops._registry as r; print(' '.join(r._REGISTRY))"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["aa_first", *nas.ops._registry._REGISTRY, "zz_last"]
