"""The table predicts a network from the sum of its units' entries. For TorchScript that is only sound
if the frozen network runs the very ops its frozen units run: a fusion across unit boundaries (in
freezing or in the executor's optimisation at run time) would make the network faster than any sum
of its units, by an amount no affine correction follows. These tests check the executed graphs."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from nas.builder import build, build_unit
from nas.space import load_space, plan, sample
from proxies.latency import current_profile
from proxies.latency.backends import prepare
from roots import SPACES_DIR

# Nodes that compute nothing: constants and the lists and tuples passed as op arguments.
_BOOKKEEPING = {"prim::Constant", "prim::ListConstruct", "prim::TupleConstruct", "prim::GetAttr"}


def _executed_ops(module: torch.nn.Module, input_shape) -> Counter:
    """Op kinds of the graph TorchScript's executor runs for `module`, once its profiling runs are over."""
    runner = prepare(module, input_shape, current_profile("torchscript"), copy=False)
    for _ in range(3):  # the profiling executor optimises the graph after its first runs
        runner.run()
    graph = torch.jit.last_executed_optimized_graph()
    return Counter(node.kind() for node in graph.nodes() if node.kind() not in _BOOKKEEPING)


@pytest.mark.parametrize("name,seed", [("mobilenet_v3", 0), ("sandglass", 0)])
def test_a_torchscript_network_runs_exactly_its_units_ops(name: str, seed: int) -> None:
    space = load_space(SPACES_DIR / f"{name}.yaml")
    arch = sample(space, seed)
    net_plan = plan(space, arch)
    network = _executed_ops(build(space, arch), net_plan.input_shape)
    units = Counter()
    for unit in net_plan.units:
        units += _executed_ops(build_unit(unit.key, space.norm), unit.key.input_shape)
    assert network["aten::_convolution"] > 0  # the graph read is the network's, not an empty one
    assert network == units
