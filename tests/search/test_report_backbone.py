"""The space's backbone (the published network a space is built around) on the run's Pareto plot."""
from __future__ import annotations

import json

import pytest

from nas import api
from nas.space import load_space, plan, project
from search_helpers import COSTS, TINY_SPACE, synthetic_model

TARGET = 0.4  # ms on the synthetic table
BACKBONE = """
name: tiny_backbone
resolution: 32
num_classes: 10
stem: {out: 8}
stages:
  - {stride: 2, depth: 1, width: 16, block: {op: inverted_residual, kernel: 3, expand: 2, se: false}}
  - {stride: 2, depth: 2, width: 32, block: {op: sandglass, kernel: 5, expand: 4}}
head: {pool: avg}
"""


@pytest.fixture
def space_with_backbone(write_yaml):
    write_yaml(BACKBONE, "tiny_backbone.yaml")
    return write_yaml(TINY_SPACE + "backbone: tiny_backbone.yaml\n", "tiny.yaml")


@pytest.mark.parametrize("objective", ["macs", "params"])
def test_the_backbone_is_placed_as_the_trials_are(space_with_backbone, tmp_path, objective) -> None:
    """Its objective is its own MACs or params, and its latency the table's prediction at the run's speed
    (as every trial's was), so it sits on the same axes as the front."""
    latency = synthetic_model(space_with_backbone)
    result = api.search(space_with_backbone, f"{TARGET}ms", run_dir=tmp_path / "run", latency=latency,
                        measure=False, cost=COSTS, n_trials=10, objective=objective)
    space = load_space(space_with_backbone)
    arch = project(space, load_space(space.backbone))
    macs, params = COSTS.macs_params(space, arch)
    point = result.summary["backbone"]
    speed = json.loads((tmp_path / "run" / "run.json").read_text())["machine_speed"]
    assert point["name"] == "tiny_backbone" and (point["macs"], point["params"]) == (macs, params)
    assert point["objective"] == {"macs": macs, "params": params}[objective]
    assert point["predicted_latency_ms"] == pytest.approx(latency.predict_ms(space, arch) * speed)
    assert len(plan(space, arch).units) > 0 and (tmp_path / "run" / "pareto.png").stat().st_size > 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["backbone"] == point


def test_no_backbone_point_without_a_backbone_or_for_other_objectives(write_yaml, space_with_backbone,
                                                                      tmp_path) -> None:
    plain = write_yaml(TINY_SPACE, "plain.yaml")
    result = api.search(plain, f"{TARGET}ms", run_dir=tmp_path / "a", latency=synthetic_model(plain),
                        measure=False, cost=COSTS, n_trials=5)
    assert result.summary["backbone"] is None
    result = api.search(space_with_backbone, f"{TARGET}ms", run_dir=tmp_path / "b",
                        latency=synthetic_model(space_with_backbone), measure=False, cost=COSTS, n_trials=5,
                        objective="naswot")
    assert result.summary["backbone"] is None  # a proxy's score of it would need the proxy run on it
