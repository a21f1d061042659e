"""A short fingerprint of a search space, for files made for one space (studies, supernet checkpoints)."""
from __future__ import annotations

import hashlib
import json

from nas.space.arch import decisions
from nas.space.plan import plan
from nas.space.schema import SearchSpace


def space_fingerprint(space: SearchSpace) -> str:
    """Changes whenever a decision, a choice list or the fixed structure of the space changes."""
    first = {d.name: d.choices[0] for d in decisions(space)}
    doc = {"decisions": [[d.name, [repr(c) for c in d.choices]] for d in decisions(space)],
           "units": [u.text for u in plan(space, first).units]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
