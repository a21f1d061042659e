"""A small valid search space and a fixed architecture that is a point of it, for the space error tests
(tests/space/test_space_errors.py, test_arch_errors.py): each mutates a deep copy and dumps it."""
from __future__ import annotations

import copy
from typing import Any

import yaml

# A valid space: 3 stages, 6 decisions (s2.depth, s2.width, s2.b{0,1}.{kernel,expand}).
BASE: dict[str, Any] = {
    "name": "tiny",
    "resolution": 32,
    "num_classes": 10,
    "stem": {"out": 8, "kernel": 3, "stride": 2, "act": "relu"},
    "stages": [
        {"name": "s1", "stride": 1, "depth": 1, "width": 8,
         "block": {"op": "inverted_residual", "kernel": 3, "expand": 1}},
        {"name": "s2", "stride": 2, "depth": [1, 2], "width": [16, 24],
         "block": {"op": "inverted_residual", "kernel": [3, 5], "expand": [3, 6]}},
        {"name": "s3", "stride": 2, "depth": 2, "width": 32,
         "block": {"op": "inverted_residual", "kernel": 3, "expand": 4}},
    ],
    "head": {"pool": "avg"},
}

# A fixed architecture that is a point of BASE (s2: depth 2, width 24, kernel 5, expand 6).
BACKBONE: dict[str, Any] = copy.deepcopy(BASE)
BACKBONE["name"] = "tiny-fixed"
BACKBONE["stages"][1] = {"name": "s2", "stride": 2, "depth": 2, "width": 24,
                         "block": {"op": "inverted_residual", "kernel": 5, "expand": 6}}


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)
