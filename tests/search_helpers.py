"""A tiny space and a synthetic latency table for search tests: fast, deterministic, no timing noise."""
from __future__ import annotations

from pathlib import Path

from nas.cost import CostModel
from nas.latency import LatencyModel
from nas.space import load_space, unique_units
from proxies.latency import Entry, LatencyTable, current_profile

TARGET = 0.4  # ms on the synthetic table: about half of the tiny space is feasible

TINY_SPACE = """
name: tiny
resolution: [32, 48]
num_classes: 10
stem: {out: 8}
stages:
  - {stride: 2, depth: [1, 2], width: [16, 24], block: {op: [inverted_residual, sandglass], kernel: [3, 5], expand: [2, 4], se: [false, true]}}
  - {stride: 2, depth: [1, 2], width: [32, 40], block: {op: [inverted_residual, sandglass], kernel: [3, 5], expand: [2, 4]}}
head: {pool: avg}
"""


COSTS = CostModel()  # fvcore counts per unit, shared by every test of the session


def synthetic_ms(macs: int) -> float:
    """A made-up but monotone unit latency: 20 us per call plus 1 ms per 2 M MACs."""
    return 0.02 + macs / 2e6


def synthetic_table(space_file: Path, path: Path | None = None) -> LatencyTable:
    """Every unit of the space with a synthetic entry, on this machine's 1-thread torch profile."""
    space = load_space(space_file)
    cost = COSTS
    entries = {text: Entry(ms=synthetic_ms(cost.unit_counts(unit, space).macs), spread_ms=0.0, runs=1, rounds=1)
               for text, unit in unique_units(space).items()}
    table = LatencyTable(current_profile("torch", threads=1, batch_size=1), entries, path=path)
    if path is not None:
        table.save()
    return table


def synthetic_model(space_file: Path) -> LatencyModel:
    return LatencyModel(synthetic_table(space_file), measure_missing=False)
