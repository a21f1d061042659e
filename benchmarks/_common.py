"""What every benchmark shares: its command line, the quick mode, timing helpers and the JSON it writes.

A benchmark builds its parser with `parser()`, reads it with `parse()` (which applies its quick
sizes under `--quick`), times with `timed()` and ends with `finish()`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

from proxies.atomic import write_bytes_atomic

T = TypeVar("T")

DEFAULT_SPACE = "search_spaces/sandglass.yaml"
# The tiny space every quick mode runs on unless --space says otherwise: tens of units, 32 px.
QUICK_SPACE = str(Path(__file__).resolve().with_name("quick.yaml"))
QUICK_NOTE = ("quick mode: small sizes to check that this benchmark runs end to end; "
              "its figures are not measurements to quote")


def parser(doc: str, *, space: str | None = DEFAULT_SPACE, seed: bool = True,
           threads: int | None = None) -> argparse.ArgumentParser:
    """A parser with the options benchmarks share: --space, --seed and --threads where the benchmark
    takes them (None / False: it does not), --json and --quick. `doc` is the module docstring."""
    script = Path(sys.argv[0])
    # Run as `python -m benchmarks.<name>`, argv[0] is this package's file: say so in usage lines.
    prog = f"python -m benchmarks.{script.stem}" if script.parent.name == "benchmarks" else None
    p = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    if space is not None:
        p.add_argument("--space", default=space)
    if seed:
        p.add_argument("--seed", type=int, default=0)
    if threads is not None:
        p.add_argument("--threads", type=int, default=threads)
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (and the tiny benchmarks/quick.yaml space) to check the whole path in "
                        "seconds; the figures are not for quoting")
    return p


def parse(p: argparse.ArgumentParser, quick: Mapping[str, Any], argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line; under --quick, `quick` (option name -> value) replaces the defaults, so an
    option given on the command line still wins. --space defaults to the tiny space then."""
    args = p.parse_args(argv)
    if args.quick:
        space = {"space": QUICK_SPACE} if "space" in vars(args) else {}
        # argparse leaves an attribute the namespace already has alone unless the option is given.
        args = p.parse_args(argv, namespace=argparse.Namespace(**{**space, **quick}))
        print(QUICK_NOTE, flush=True)
    return args


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    """Seconds one call of `fn(*args, **kwargs)` took, and what it returned."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def median_ms(seconds: Iterable[float]) -> float:
    """The median of timings in seconds, in milliseconds."""
    return statistics.median(seconds) * 1e3


def write_json(path: str | Path, figures: Mapping[str, Any], default: Callable[[Any], Any] | None = None) -> Path:
    """Write `figures` as indented JSON, atomically (a temp file, then a rename): a killed run never
    leaves a half-written result where an earlier one stood."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(target, (json.dumps(figures, indent=2, default=default) + "\n").encode())


def finish(args: argparse.Namespace, figures: Mapping[str, Any], default: Callable[[Any], Any] | None = None) -> int:
    """The end of every benchmark: the JSON under --json (with `quick` saying which mode made it), and
    the quick-mode warning again under the figures. Returns the exit status."""
    if args.json:
        write_json(args.json, {**figures, "quick": args.quick}, default)
        print(f"wrote {args.json}")
    if args.quick:
        print(QUICK_NOTE)
    return 0
