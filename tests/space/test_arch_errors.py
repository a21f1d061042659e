"""Architecture values that do not fit a valid space: each fails with one exact `ArchError`."""
from __future__ import annotations

import copy

import pytest

from nas.errors import ArchError
from nas.space import Arch, load_space, plan, sample
from space_helpers import BASE, dump


@pytest.fixture
def base_space(write_yaml):
    return load_space(write_yaml(dump(BASE)))


def test_plan_value_not_a_choice(base_space) -> None:
    values = dict(sample(base_space, 0), **{"s2.width": 20})
    with pytest.raises(ArchError) as info:
        plan(base_space, values)
    assert str(info.value) == f"{base_space.file}: s2.width: 20 is not one of [16, 24]"
    with pytest.raises(ArchError) as info:
        Arch.of(values, base_space)
    assert str(info.value) == f"{base_space.file}: s2.width: 20 is not one of [16, 24]"


def test_plan_missing_decision(base_space) -> None:
    values = {k: v for k, v in sample(base_space, 0).items() if k != "s2.b0.kernel"}
    message = f"{base_space.file}: the architecture gives no value for decision 's2.b0.kernel'"
    with pytest.raises(ArchError) as info:
        plan(base_space, values)
    assert str(info.value) == message
    with pytest.raises(ArchError) as info:
        Arch.of(values, base_space)
    assert str(info.value) == message


def test_arch_of_unknown_decision(base_space) -> None:
    with pytest.raises(ArchError) as info:
        Arch.of(dict(sample(base_space, 0), **{"s2.b0.groups": 2}), base_space)
    assert str(info.value) == f"{base_space.file}: unknown decision 's2.b0.groups'"


def test_arch_of_rejects_bool_for_int(write_yaml) -> None:
    data = copy.deepcopy(BASE)
    data["stages"][1]["block"]["kernel"] = [1, 3]
    space = load_space(write_yaml(dump(data)))
    values = dict(sample(space, 0), **{"s2.b0.kernel": True})  # True == 1, but it is not a kernel size
    with pytest.raises(ArchError) as info:
        Arch.of(values, space)
    assert str(info.value) == f"{space.file}: s2.b0.kernel: True is not one of [1, 3]"


def test_arch_of_accepts_a_sample(base_space) -> None:
    arch = sample(base_space, 3)
    assert Arch.of(dict(arch), base_space) == arch
