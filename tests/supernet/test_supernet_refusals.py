"""The supernet refuses, in one line naming the block, what it cannot represent; an architecture outside the
space is refused by the space; a fixed-architecture file runs through `project`."""
from __future__ import annotations

import pytest
import torch

from nas.builder import build
from nas.errors import ArchError, SpaceError
from nas.space import canonical, load_fixed, load_space, plan, project, sample, write_fixed
from nas.supernet import Supernet, SupernetError

from subnet_helpers import TOL, block, extremes, inputs, one_line, space_yaml


def ir_space(tmp_path, name: str, widths: list[int], kernels: list[int], depths: list[int] | None = None):
    stages = [{"stride": 2, "depth": depths or [1, 2], "width": widths,
               "block": block("inverted_residual", kernel=kernels, expand=[2, 4])}]
    path = tmp_path / f"{name}.yaml"
    path.write_text(space_yaml(name, 16, stages), encoding="utf-8")
    return load_space(path)


IR = "op=inverted_residual cin={} cout={} s={} k={} hid={} se={} act=relu ser=0.25 seg=hardsigmoid"


@pytest.fixture
def narrow(tmp_path) -> Supernet:
    """The supernet of a space with widths [16, 24], kernels [3, 5], depth [1, 2], no SE."""
    return Supernet(ir_space(tmp_path, "narrow", [16, 24], [3, 5]))


def test_a_wider_config_than_the_supernet_holds_is_refused_naming_the_block(narrow: Supernet, tmp_path) -> None:
    wide = ir_space(tmp_path, "wide", [16, 32], [3, 5])
    with pytest.raises(SupernetError) as exc:
        narrow.weights(None, plan(wide, {**extremes(wide)[0], "s1.width": 32}))
    assert one_line(exc) == (f"{narrow.space.file}: the supernet cannot represent s1.b0 = {IR.format(16, 32, 2, 3, 32, 0)}: "
                             f"block.2.0.weight needs [32, 32, 1, 1], the supernet holds [24, 64, 1, 1]")


def test_a_larger_kernel_than_the_supernet_holds_is_refused_naming_the_block(narrow: Supernet, tmp_path) -> None:
    big = ir_space(tmp_path, "big", [16, 24], [3, 9])
    with pytest.raises(SupernetError) as exc:
        narrow.weights(None, plan(big, {**extremes(big)[0], "s1.depth": 2, "s1.b1.kernel": 9}))
    assert one_line(exc) == (f"{narrow.space.file}: the supernet cannot represent s1.b1 = {IR.format(16, 16, 1, 9, 32, 0)}: "
                             f"block.1.0.weight needs [32, 1, 9, 9], the supernet holds [96, 1, 5, 5]")


def test_a_deeper_stage_or_se_the_supernet_lacks_is_refused_naming_the_block(narrow: Supernet, tmp_path) -> None:
    deep = ir_space(tmp_path, "deep", [16, 24], [3, 5], depths=[1, 2, 3])
    with pytest.raises(SupernetError) as exc:
        narrow.weights(None, plan(deep, extremes(deep)[-1]))
    assert one_line(exc) == (f"{narrow.space.file}: the supernet has no unit at s1.b2 "
                             f"(for {IR.format(24, 24, 1, 5, 96, 0)})")
    stages = [{"stride": 2, "depth": [1, 2], "width": [16, 24],
               "block": block("inverted_residual", kernel=[3, 5], expand=[2, 4], se=[False, True])}]
    (tmp_path / "se.yaml").write_text(space_yaml("se", 16, stages), encoding="utf-8")
    se = load_space(tmp_path / "se.yaml")
    with pytest.raises(SupernetError) as exc:
        narrow.weights(None, plan(se, extremes(se)[-1]))
    assert one_line(exc) == (f"{narrow.space.file}: the supernet cannot represent s1.b0 = {IR.format(16, 24, 2, 5, 64, 1)}: "
                             f"no shared weights for inverted_residual:conv.dw+se.fc1/weight")


def test_an_architecture_outside_the_space_is_refused_in_one_line(narrow: Supernet) -> None:
    arch = {**extremes(narrow.space)[0], "s1.b0.kernel": 9}
    for call in (lambda: narrow.weights(arch), lambda: narrow(inputs(narrow.space, extremes(narrow.space)[0]), arch),
                 lambda: narrow.subnet(arch)):
        with pytest.raises(ArchError) as exc:
            call()
        assert one_line(exc) == f"{narrow.space.file}: s1.b0.kernel: 9 is not one of [3, 5]"
    with pytest.raises(SupernetError) as exc:
        narrow(torch.zeros(1, 3, 12, 12), extremes(narrow.space)[0])
    assert one_line(exc) == f"{narrow.space.file}: the subnet takes 16x16 inputs, got (12, 12)"


def test_a_fixed_architecture_file_runs_through_project_or_is_refused(narrow: Supernet, tmp_path) -> None:
    """The user path for one architecture file: `project(space, load_fixed(file))` gives the supernet's arch."""
    space = narrow.space
    arch = sample(space, 1)
    write_fixed(space, arch, tmp_path / "one.yaml")
    fixed = load_fixed(tmp_path / "one.yaml")
    assert project(space, fixed) == canonical(space, arch)  # inactive decisions at their first choice
    narrow.eval()
    x = inputs(space, arch)
    static = build(fixed, init=False)
    static.load_state_dict({k: v.detach().clone() for k, v in narrow.weights(project(space, fixed)).items()})
    with torch.no_grad():
        assert (narrow(x, project(space, fixed)) - static.eval()(x)).abs().max().item() <= TOL
    big = ir_space(tmp_path, "big", [16, 24], [3, 9])
    write_fixed(big, {**extremes(big)[0], "s1.b0.kernel": 9}, tmp_path / "outside.yaml")
    with pytest.raises(SpaceError) as exc:
        project(space, load_fixed(tmp_path / "outside.yaml"))
    outside = tmp_path / "outside.yaml"
    assert one_line(exc) == (f"{space.file}: {outside}: {outside} is not a point of this space: "
                             f"s1.b0.kernel = 9 is not one of [3, 5]")
