"""Command line: argument parsing and wiring only, one module per command group.
Errors print one line and exit with code 2."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from nas import __version__
from nas.cli import arch, export, lut, search, space, train, workers
from nas.errors import NasError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="Hardware-aware neural architecture search for mobile networks.")
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    groups = parser.add_subparsers(dest="group", required=True, metavar="{search,report,workers,export,train,space,arch,lut}")

    for group in (space, arch, lut, search, workers, export, train):
        group.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from proxies.latency import LatencyError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LatencyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
