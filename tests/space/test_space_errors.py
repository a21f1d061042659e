"""Malformed space / architecture files: each fails at load with one exact, one-line `SpaceError`.

Every case mutates a small valid base space (or writes raw text), dumps it to
tmp_path and checks `str(exc)` word for word: `<file>: <key path>: <detail>`.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest

from nas.cli import main
from nas.errors import NasError, SpaceError
from nas.ops import block_fields, op_names
from nas.space import decisions, load_space
from space_helpers import BACKBONE, BASE, dump

TOP = "name, in_channels, num_classes, resolution, width_mult, channel_divisor, norm, stem, stages, head, backbone"
# every declared block field and stage op: operator files add theirs, so the lists come from the registry
FIELDS = ", ".join(block_fields())
assert FIELDS.startswith("op, kernel, expand, hidden, se, act, groups, identity_mult, se_ratio, se_gate")
KERNELS = "(1, 3, 5, 7, 9, 11)"
ACTS = "relu, relu6, hardswish, silu, none"
STAGE_OPS = ", ".join(op_names(stage_only=True))
assert {"conv_bn_act", "dwsep", "inverted_residual", "sandglass", "shuffle_v1", "shuffle_v2",
        "squeeze_excite"} <= set(op_names(stage_only=True))
STAGE_NAME_RULE = "(lower-case letters, digits, '_'; not 'res')"


def stage(i: int) -> Callable[[dict], dict]:
    return lambda d: d["stages"][i]


def block(i: int) -> Callable[[dict], dict]:
    return lambda d: d["stages"][i]["block"]


def setkey(where: Callable[[dict], dict], **values: Any) -> Callable[[dict], None]:
    return lambda d: where(d).update(values)


def delkey(where: Callable[[dict], dict], key: str) -> Callable[[dict], None]:
    return lambda d: where(d).pop(key)


def top(d: dict) -> dict:
    return d


def replace_stage(i: int, new: dict) -> Callable[[dict], None]:
    return lambda d: d["stages"].__setitem__(i, new)


# (case id, mutation of BASE, expected message after "<file>: ")
CASES: list[tuple[str, Callable[[dict], None], str]] = [
    # unknown keys
    ("unknown-top-key", setkey(top, colour="red"), f"colour: unknown key; allowed: {TOP}"),
    ("unknown-block-key", setkey(block(0), expnd=2), f"stages[0].block.expnd: unknown key; allowed: {FIELDS}"),
    ("unknown-norm-key", setkey(top, norm={"epsilon": 0.001}), "norm.epsilon: unknown key; allowed: eps, momentum"),
    # missing required keys
    ("missing-name", delkey(top, "name"), "missing required key 'name'"),
    ("missing-stages", delkey(top, "stages"), "missing required key 'stages'"),
    ("missing-head", delkey(top, "head"), "missing required key 'head'"),
    ("missing-stem-out", delkey(lambda d: d["stem"], "out"), "stem: missing required key 'out'"),
    ("missing-stage-stride", delkey(stage(1), "stride"), "stages[1]: missing required key 'stride'"),
    ("missing-stage-width", delkey(stage(1), "width"), "stages[1]: missing required key 'width'"),
    ("missing-stage-depth", delkey(stage(1), "depth"), "stages[1]: missing required key 'depth'"),
    ("missing-block-op", delkey(block(1), "op"), "stages[1].block: missing required key 'op'"),
    ("missing-block-and-blocks", delkey(stage(1), "block"),
     "stages[1]: needs 'block' (one spec for every block) or 'blocks' (one spec per block)"),
    ("missing-head-conv-out", setkey(lambda d: d["head"], conv={"act": "relu"}), "head.conv: missing required key 'out'"),
    # wrong types
    ("string-depth", setkey(stage(2), depth="2"), "stages[2].depth: expected an integer, got '2' (a string)"),
    ("bool-kernel", setkey(block(0), kernel=True), f"stages[0].block.kernel: True is not one of the allowed odd sizes {KERNELS}"),
    ("float-width", setkey(stage(0), width=8.0), "stages[0].width: expected an integer, got 8.0 (a number)"),
    ("float-stride", setkey(stage(1), stride=2.0), "stages[1].stride: 2.0 is not 1 or 2"),
    ("string-se", setkey(block(2), se="yes"), "stages[2].block.se: expected true or false, got 'yes' (a string)"),
    ("stage-not-mapping", replace_stage(1, 5),
     "stages[1]: expected a mapping with keys name, depth, stride, width, block, blocks; got an integer"),
    ("blocks-not-list", setkey(stage(2), blocks={"op": "inverted_residual"}),
     "stages[2].blocks: expected a non-empty list of block mappings, got a mapping"),
    ("backbone-not-string", setkey(top, backbone=3), "backbone: expected the path of a fixed architecture YAML, got an integer"),
    ("bad-name", setkey(top, name="a b"), "name: 'a b' is not a valid name (letters, digits, '_', '-', '.')"),
    ("empty-stages", setkey(top, stages=[]), "stages: expected a non-empty list of stages, got an empty list"),
    # values out of range
    ("even-kernel", setkey(block(2), kernel=4), f"stages[2].block.kernel: 4 is not one of the allowed odd sizes {KERNELS}"),
    ("even-kernel-choice", setkey(block(1), kernel=[3, 4]),
     f"stages[1].block.kernel[1]: 4 is not one of the allowed odd sizes {KERNELS}"),
    ("stride-3", setkey(stage(1), stride=3), "stages[1].stride: 3 is not 1 or 2"),
    ("depth-0", setkey(stage(2), depth=0), "stages[2].depth: 0 is below the minimum 1"),
    ("depth-65", setkey(stage(2), depth=65), "stages[2].depth: 65 is above the maximum 64"),
    ("width-0-choice", setkey(stage(1), width=[16, 0]), "stages[1].width[1]: 0 is below the minimum 1"),
    ("expand-0", setkey(block(2), expand=0), "stages[2].block.expand: 0 is outside the allowed range (0, 64]"),
    ("width-mult-0", setkey(top, width_mult=0), "width_mult: 0 is outside the allowed range (0, 8]"),
    ("resolution-4", setkey(top, resolution=4), "resolution: 4 is below the minimum 8"),
    ("resolution-choice-4", setkey(top, resolution=[32, 4]), "resolution[1]: 4 is below the minimum 8"),
    ("dropout-1", setkey(lambda d: d["head"], dropout=1.0), "head.dropout: 1.0 is outside the allowed range [0, 0.99]"),
    ("identity-mult-0", replace_stage(2, {"name": "s3", "stride": 2, "depth": 2, "width": 32,
                                          "block": {"op": "sandglass", "expand": 2, "identity_mult": 0}}),
     "stages[2].block.identity_mult: 0 is outside the allowed range (0, 1]"),
    ("identity-mult-1.5", replace_stage(2, {"name": "s3", "stride": 2, "depth": 2, "width": 32,
                                            "block": {"op": "sandglass", "expand": 2, "identity_mult": 1.5}}),
     "stages[2].block.identity_mult: 1.5 is outside the allowed range (0, 1]"),
    # choice lists
    ("empty-choices", setkey(stage(1), width=[]), "stages[1].width: empty list of choices; give a value or at least one choice"),
    ("duplicate-choice", setkey(block(1), kernel=[3, 5, 3]), "stages[1].block.kernel: choice 3 is listed twice"),
    # names from closed sets
    ("unknown-op", setkey(block(1), op="mbconv"),
     f"stages[1].block.op: 'mbconv' is not one of the allowed stage operators: {STAGE_OPS}"),
    ("head-unit-as-stage-op", setkey(block(1), op="classifier"),
     f"stages[1].block.op: 'classifier' is not one of the allowed stage operators: {STAGE_OPS}"),
    ("unknown-act", setkey(block(1), act="gelu"), f"stages[1].block.act: 'gelu' is not one of the allowed activations: {ACTS}"),
    ("unknown-stem-act", setkey(lambda d: d["stem"], act="gelu"), f"stem.act: 'gelu' is not one of the allowed activations: {ACTS}"),
    ("unknown-se-gate", setkey(block(2), se_gate="relu"),
     "stages[2].block.se_gate: 'relu' is not one of the allowed gates: hardsigmoid, sigmoid"),
    ("unknown-head-pool", setkey(lambda d: d["head"], pool="max"), "head.pool: 'max' is not one of the allowed pools: avg, mean"),
    ("unknown-stem-pool", setkey(lambda d: d["stem"], pool="avg"),
     "stem.pool: 'avg' is not one of the allowed stem pools: none, max"),
    # fields and operators
    ("field-not-used-by-op", setkey(stage(2), block={"op": "shuffle_v2", "expand": 2}),
     "stages[2].block.expand: not used by shuffle_v2"),
    ("field-used-by-no-op-choice", setkey(block(1), op=["inverted_residual", "shuffle_v2"], groups=2),
     "stages[1].block.groups: not used by inverted_residual or shuffle_v2"),
    ("field-in-override-not-used", setkey(stage(2), blocks=[{}, {"groups": 2}]),
     "stages[2].blocks[1].groups: not used by inverted_residual"),
    ("override-without-op", replace_stage(2, {"name": "s3", "stride": 2, "width": 32,
                                              "blocks": [{"op": "inverted_residual", "expand": 4}, {"expand": 4}]}),
     "stages[2].blocks[1]: missing required key 'op'"),
    ("inverted-residual-without-expand", delkey(block(2), "expand"), "stages[2].block: inverted_residual needs 'expand' or 'hidden'"),
    ("shuffle-v1-without-groups", setkey(stage(2), block={"op": "shuffle_v1"}), "stages[2].block: shuffle_v1 needs 'groups'"),
    ("expand-and-hidden", setkey(block(2), hidden=64), "stages[2].block: give 'expand' or 'hidden', not both"),
    ("blocks-length", setkey(stage(2), blocks=[{"kernel": 3}]), "stages[2].blocks: lists 1 block but the largest depth is 2"),
    # shapes every choice can meet
    ("shuffle-v2-stride-1-widens", replace_stage(0, {"name": "s1", "stride": 1, "depth": 1, "width": 16,
                                                     "block": {"op": "shuffle_v2"}}),
     "stages[0].block: shuffle_v2 at stride 1 passes half its input through, so widths must match (got 8->16) "
     "(block 0 of stage s1)"),
    # s2.width may be 16, which groups 3 does not divide.
    ("shuffle-v1-groups", setkey(stage(2), block={"op": "shuffle_v1", "groups": 3}, width=48),
     "stages[2].block: groups 3 does not divide the input width 16 of shuffle_v1 16->48 (block 0 of stage s3)"),
    ("squeeze-excite-stride-2", setkey(stage(2), block={"op": "squeeze_excite"}),
     "stages[2].block: squeeze_excite keeps its input shape, so it needs stride 1 and equal widths "
     "(got 16->32 at stride 2) (block 0 of stage s3)"),
    # stage names
    ("bad-stage-name", setkey(stage(1), name="Stage2"), f"stages[1].name: 'Stage2' is not a valid stage name {STAGE_NAME_RULE}"),
    ("stage-named-res", setkey(stage(1), name="res"), f"stages[1].name: 'res' is not a valid stage name {STAGE_NAME_RULE}"),
    ("duplicate-stage-name", setkey(stage(2), name="s1"), "stages[2].name: 's1' is used by an earlier stage"),
    ("default-name-taken", lambda d: (d["stages"][0].update(name="s2"), d["stages"][1].pop("name")),
     "stages[1].name: 's2' is used by an earlier stage"),  # stage 1's default name is s2
]


def load_error(path: Path) -> str:
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_base_space_is_valid(write_yaml) -> None:
    space = load_space(write_yaml(dump(BASE)))
    assert [d.name for d in decisions(space)] == [
        "s2.depth", "s2.width", "s2.b0.kernel", "s2.b0.expand", "s2.b1.kernel", "s2.b1.expand"]


def test_enough_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 30
    assert len({c[2] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("mutate, detail", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_space(write_yaml, mutate: Callable[[dict], None], detail: str) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    path = write_yaml(dump(data))
    assert load_error(path) == f"{path}: {detail}"


def test_error_fields(write_yaml) -> None:
    data = copy.deepcopy(BASE)
    data["stages"][2]["block"]["kernel"] = 4
    path = write_yaml(dump(data))
    with pytest.raises(SpaceError) as info:
        load_space(path)
    err = info.value
    assert (err.file, err.path) == (str(path), "stages[2].block.kernel")
    assert err.detail == f"4 is not one of the allowed odd sizes {KERNELS}"
    assert isinstance(err, NasError) and isinstance(err, ValueError)


# ---- raw text: syntax, duplicate keys, empty files, not a mapping ----

TEXT_CASES = [
    ("syntax-unclosed-list", "name: tiny\nstages: [1, 2\nhead: {}\n",
     "line 3: YAML syntax error: expected ',' or ']', but got ':'"),
    ("syntax-indentation", "name: tiny\nresolution: 32\nstem:\n  out: 8\n   kernel: 3\n",
     "line 5: YAML syntax error: mapping values are not allowed here"),
    ("duplicate-top-key", "name: a\nresolution: 32\nname: b\n", "line 3: YAML syntax error: duplicate key 'name'"),
    ("duplicate-nested-key", "name: tiny\nresolution: 32\nstem:\n  out: 8\n  out: 16\n",
     "line 5: YAML syntax error: duplicate key 'out'"),
    ("empty-file", "", f"the file is empty; expected a mapping with keys {TOP}"),
    ("comments-only", "# nothing here\n", f"the file is empty; expected a mapping with keys {TOP}"),
    ("top-level-list", "- name: tiny\n- resolution: 32\n", f"expected a mapping with keys {TOP}; got a list"),
    ("top-level-scalar", "tiny\n", f"expected a mapping with keys {TOP}; got a string"),
]


@pytest.mark.parametrize("text, detail", [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_malformed_text(write_yaml, text: str, detail: str) -> None:
    path = write_yaml(text)
    assert load_error(path) == f"{path}: {detail}"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert load_error(path) == f"{path}: no such file"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert load_error(tmp_path) == f"{tmp_path}: is a directory, expected a YAML file"


# ---- backbones ----

def with_backbone(write_yaml, backbone: dict | None, ref: str = "backbone.yaml") -> Path:
    if backbone is not None:
        write_yaml(dump(backbone), "backbone.yaml")
    data = copy.deepcopy(BASE)
    data["backbone"] = ref
    return write_yaml(dump(data))


def test_backbone_ok(write_yaml, tmp_path: Path) -> None:
    space = load_space(with_backbone(write_yaml, BACKBONE))
    assert space.backbone == str(tmp_path / "backbone.yaml")
    assert load_space(space.backbone).is_fixed


def test_backbone_path_is_relative_to_the_space(write_yaml, tmp_path: Path) -> None:
    write_yaml(dump(BACKBONE), "fixed/backbone.yaml")
    data = copy.deepcopy(BASE)
    data["backbone"] = "../fixed/backbone.yaml"
    space = load_space(write_yaml(dump(data), "spaces/space.yaml"))
    assert space.backbone == str(tmp_path / "spaces" / ".." / "fixed" / "backbone.yaml")


def test_backbone_file_missing(write_yaml, tmp_path: Path) -> None:
    path = with_backbone(write_yaml, None, "missing.yaml")
    assert load_error(path) == f"{path}: backbone: {tmp_path / 'missing.yaml'}: no such file"


def test_backbone_file_malformed(write_yaml, tmp_path: Path) -> None:
    bad = copy.deepcopy(BACKBONE)
    bad["stages"][0]["stride"] = 3
    path = with_backbone(write_yaml, bad)
    # The error names the file to fix: the backbone itself.
    assert load_error(path) == f"{tmp_path / 'backbone.yaml'}: stages[0].stride: 3 is not 1 or 2"


BACKBONE_CASES: list[tuple[str, Callable[[dict], None], str]] = [
    ("width-not-a-choice", setkey(stage(1), width=40), "s2.width = 40 is not one of [16, 24]"),
    ("kernel-not-a-choice", setkey(block(1), kernel=7), "s2.b0.kernel = 7 is not one of [3, 5]"),
    ("too-deep", setkey(stage(2), depth=3), "s3.depth = 3 is not one of [2]"),
    ("other-stride", setkey(stage(1), stride=1), "s2.stride = 1, the space has 2"),
    ("other-classes", setkey(top, num_classes=100), "num_classes differs (100 vs 10)"),
    ("fewer-stages", lambda d: d["stages"].pop(), "2 stages vs 3"),
    ("still-has-choices", setkey(stage(1), width=[16, 24]), "it still has choices (s2.width)"),
]


@pytest.mark.parametrize("mutate, detail", [c[1:] for c in BACKBONE_CASES], ids=[c[0] for c in BACKBONE_CASES])
def test_backbone_not_a_point(write_yaml, tmp_path: Path, mutate: Callable[[dict], None], detail: str) -> None:
    backbone = copy.deepcopy(BACKBONE)
    mutate(backbone)
    path = with_backbone(write_yaml, backbone)
    assert load_error(path) == f"{path}: backbone: {tmp_path / 'backbone.yaml'} is not a point of this space: {detail}"


# ---- the CLI: exit code 2, one line on stderr, nothing on stdout ----

CLI_CASES = ["even-kernel", "missing-stage-width", "unknown-op", "squeeze-excite-stride-2", "duplicate-stage-name"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_space_check_bad(write_yaml, capsys, case: str) -> None:
    _, mutate, detail = next(c for c in CASES if c[0] == case)
    data = copy.deepcopy(BASE)
    mutate(data)
    path = write_yaml(dump(data))
    assert main(["space", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: {path}: {detail}\n"


def test_cli_space_check_syntax_error(write_yaml, capsys) -> None:
    path = write_yaml("name: a\nname: b\n")
    assert main(["space", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"error: {path}: line 2: YAML syntax error: duplicate key 'name'\n")


def test_cli_space_check_missing_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "nope.yaml"
    assert main(["space", "check", str(path)]) == 2
    assert capsys.readouterr() == ("", f"error: {path}: no such file\n")


def test_cli_space_check_good(write_yaml, capsys) -> None:
    path = write_yaml(dump(BASE))
    assert main(["space", "check", str(path)]) == 0
    # 40 architectures: s2 has (4 + 4*4) block settings over depths 1, 2, times 2 widths.
    assert capsys.readouterr() == (f"ok: {path}: tiny, 3 stages, 6 decisions, log10 size 1.60\n", "")


def test_cli_space_check_good_fixed(write_yaml, capsys) -> None:
    path = write_yaml(dump(BACKBONE))
    assert main(["space", "check", str(path)]) == 0
    assert capsys.readouterr() == (f"ok: {path}: tiny-fixed, 3 stages, fixed architecture\n", "")


def test_cli_arch_stats_on_a_space(write_yaml, capsys) -> None:
    path = write_yaml(dump(BASE))
    assert main(["arch", "stats", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"error: {path}: not a fixed architecture: 6 decisions left (e.g. s2.depth); "
                   "pick one with `nas arch sample`\n")
