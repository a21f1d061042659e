"""`nas arch stats|sample`: costs and latency of one fixed architecture; draw a random one."""
from __future__ import annotations

import argparse
import json
from typing import Any

from nas.cli._common import add_profile_options, busy_note, latency_model


def _arch_stats(args: argparse.Namespace) -> int:
    from nas import api

    stats = api.arch_stats(args.file, None if args.no_latency else latency_model(args), measure=args.measure)
    info = {"name": stats.name, "file": args.file, "resolution": stats.resolution, "params": stats.params,
            "macs": stats.macs, "flops": stats.flops, "flops_by_operator": stats.flops_by_operator,
            "blocks": stats.blocks}
    if stats.latency is not None:
        info.update(_latency_fields(stats.latency, stats.blocks, args.measure))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{stats.name}: {stats.params:,} params, {stats.macs:,} MACs (conv+linear), "
          f"{stats.flops:,} fvcore flops (all ops) at {stats.resolution}x{stats.resolution}")
    if stats.latency is not None:
        _print_latency(info)
    _print_blocks(stats.blocks)
    return 0


def _latency_fields(stats: Any, blocks: list[dict[str, Any]], measured: bool) -> dict[str, Any]:
    """The latency keys of `nas arch stats --json`; each block gets its table entry as `latency_ms`."""
    for block, ms in zip(blocks, stats.unit_ms):
        block["latency_ms"] = ms
    out: dict[str, Any] = {"latency_profile": stats.profile, "predicted_latency_ms": stats.predicted.ms,
                           "predicted_interval_ms": [stats.predicted.low_ms, stats.predicted.high_ms],
                           "latency_sum_ms": stats.sum_ms, "latency_corrected": stats.corrected}
    out["busy_unit_groups"] = stats.busy_unit_groups
    if measured:
        out.update(measured_latency_ms=stats.measured_ms, measured_raw_ms=stats.measured_raw_ms,
                   machine_speed=stats.machine_speed, measured_pass_cv=stats.measured_pass_cv)
    return out


def _print_latency(info: dict[str, Any]) -> None:
    low, high = info["predicted_interval_ms"]
    print(f"latency on {info['latency_profile']}: predicted {info['predicted_latency_ms']:.2f} ms "
          f"(90% interval {low:.2f}-{high:.2f} ms)")
    if "measured_latency_ms" in info:
        speed = info["machine_speed"]
        pace = "at the table's speed" if abs(speed - 1) < 0.02 else \
            f"{speed:.2f}x {'slower' if speed > 1 else 'faster'} than the table's level"
        print(f"  measured {info['measured_latency_ms']:.2f} ms at the table's level (as timed now: "
              f"{info['measured_raw_ms']:.2f} ms, the machine running {pace})")
    note = busy_note(info["busy_unit_groups"] or {}, "the network" if "measured_latency_ms" in info else "the fill")
    if note:
        print(f"  note: {note}")


def _print_blocks(blocks: list[dict[str, Any]]) -> None:
    has_ms = "latency_ms" in blocks[0]
    print(f"  {'unit':<10} {'op':<18} {'input':<14} {'params':>10} {'MACs':>13}" + (f" {'ms':>8}" if has_ms else ""))
    for b in blocks:
        shape = "x".join(map(str, b["input_shape"]))
        ms = f" {b['latency_ms']:>8.3f}" if has_ms else ""
        print(f"  {b['stage'] + '.' + str(b['index']):<10} {b['op']:<18} {shape:<14} {b['params']:>10,} "
              f"{b['macs']:>13,}{ms}")


def _arch_sample(args: argparse.Namespace) -> int:
    from nas.space import encode, load_space, sample, write_fixed
    space = load_space(args.file)
    arch = sample(space, args.seed)
    write_fixed(space, arch, args.out, name=f"{space.name}-seed{args.seed}")
    print(f"wrote {args.out}: {encode(space, arch)}")
    return 0


def register(groups: Any) -> None:
    arch = groups.add_parser("arch", help="work with single architectures")
    arch_cmds = arch.add_subparsers(dest="command", required=True, metavar="{stats,sample}")
    p = arch_cmds.add_parser("stats", help="params, MACs, fvcore flops and latency of a fixed architecture, per block")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-latency", action="store_true", help="skip the latency prediction (no measuring)")
    p.add_argument("--measure", action="store_true", help="also measure the whole network end to end (median of "
                   "warm back-to-back calls, 3 passes, at the table's speed level and as timed now)")
    add_profile_options(p)
    p.set_defaults(func=_arch_stats)
    p = arch_cmds.add_parser("sample", help="draw a random architecture and write it as a fixed YAML")
    p.add_argument("file")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="where to write the fixed-architecture YAML")
    p.set_defaults(func=_arch_sample)
