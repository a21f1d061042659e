"""`nas space check|show`: validate a space file and list its decisions."""
from __future__ import annotations

import argparse
import json
from typing import Any


def _space_check(args: argparse.Namespace) -> int:
    from nas.space import decisions, load_space, log10_size
    space = load_space(args.file)
    kind = "fixed architecture" if space.is_fixed else f"{len(decisions(space))} decisions, log10 size {log10_size(space):.2f}"
    print(f"ok: {args.file}: {space.name}, {len(space.stages)} stages, {kind}")
    return 0


def _cost_summary(space: Any, arch: Any) -> dict[str, Any]:
    from nas.cost import CostModel
    cost = CostModel().cost(space, arch)
    return {"resolution": cost.resolution, "params": cost.params, "macs": cost.macs, "flops": cost.flops}


def _space_show(args: argparse.Namespace) -> int:
    from nas.space import decisions, load_space, log10_size, project
    space = load_space(args.file)
    backbone = None
    if space.backbone:
        arch = project(space, load_space(space.backbone))
        backbone = {"file": space.backbone, **_cost_summary(space, arch)}
    info = {
        "name": space.name,
        "file": args.file,
        "stages": [s.name for s in space.stages],
        "decisions": [{"name": d.name, "choices": list(d.choices)} for d in decisions(space)],
        "log10_size": round(log10_size(space), 4),
        "backbone": backbone,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{space.name} ({args.file}): {len(space.stages)} stages, {len(info['decisions'])} decisions, "
          f"10^{info['log10_size']:.2f} architectures")
    for d in info["decisions"]:
        print(f"  {d['name']:<22} {d['choices']}")
    if backbone:
        print(f"backbone {backbone['file']}: {backbone['params']:,} params, {backbone['macs']:,} MACs, "
              f"{backbone['flops']:,} fvcore flops at {backbone['resolution']}x{backbone['resolution']}")
    return 0


def register(groups: Any) -> None:
    space = groups.add_parser("space", help="validate and inspect search spaces")
    space_cmds = space.add_subparsers(dest="command", required=True, metavar="{check,show}")
    p = space_cmds.add_parser("check", help="validate a space or architecture file (exit 0 ok, 2 bad)")
    p.add_argument("file")
    p.set_defaults(func=_space_check)
    p = space_cmds.add_parser("show", help="decisions, choice lists, log10 size and backbone costs")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_space_show)
