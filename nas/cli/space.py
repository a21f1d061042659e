"""`nas space check|show`: validate a space file and list its decisions."""
from __future__ import annotations

import argparse
import json
from typing import Any


def _space_check(args: argparse.Namespace) -> int:
    from nas import api

    info = api.space_info(args.file, backbone=False)
    kind = "fixed architecture" if info.is_fixed else \
        f"{len(info.decisions)} decisions, log10 size {info.log10_size:.2f}"
    print(f"ok: {args.file}: {info.name}, {len(info.stages)} stages, {kind}")
    return 0


def _space_show(args: argparse.Namespace) -> int:
    from nas import api

    info = api.space_info(args.file)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    print(f"{info.name} ({args.file}): {len(info.stages)} stages, {len(info.decisions)} decisions, "
          f"10^{round(info.log10_size, 4):.2f} architectures")
    for d in info.decisions:
        print(f"  {d['name']:<22} {d['choices']}")
    if info.backbone:
        b = info.backbone
        print(f"backbone {b['file']}: {b['params']:,} params, {b['macs']:,} MACs, "
              f"{b['flops']:,} fvcore flops at {b['resolution']}x{b['resolution']}")
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
