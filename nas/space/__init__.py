"""Search spaces in YAML: loading and validation, architectures, planning, fixed-architecture output."""
from __future__ import annotations

from nas.space.arch import Arch, Decision, canonical, decisions, decode, encode, log10_size, project, sample, size
from nas.space.dump import fixed_dict, write_fixed
from nas.space.fingerprint import space_fingerprint
from nas.space.units import unique_units
from nas.space.load import load_fixed, load_space, parse_space
from nas.space.plan import NetPlan, Unit, block_config, plan
from nas.space.schema import BlockSpace, HeadSpec, SearchSpace, StageSpace, StemSpec

__all__ = [
    "Arch", "BlockSpace", "Decision", "HeadSpec", "NetPlan", "SearchSpace", "StageSpace", "StemSpec", "Unit",
    "block_config", "canonical", "decisions", "decode", "encode", "fixed_dict", "load_fixed", "load_space", "log10_size",
    "parse_space", "plan", "project", "sample", "size", "space_fingerprint", "unique_units", "write_fixed",
]
