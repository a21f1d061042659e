"""Command line: argument parsing and wiring only, one module per command group.
Errors print one line and exit with code 2."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from nas import __version__
from nas.cli import arch, export, lut, search, space, supernet, train, worker
from nas.errors import NasError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="Hardware-aware neural architecture search for mobile networks.")
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    groups = parser.add_subparsers(dest="group", required=True, metavar="{search,worker,report,export,train,supernet,space,arch,lut}")

    for group in (space, arch, lut, search, worker, export, train, supernet):
        group.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from proxies.latency import LatencyError

    try:
        _import_plugins()  # before the parser is built: `--objective` and `--sampler` help list their names
        args = build_parser().parse_args(argv)
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


PLUGINS_ENV = "NAS_PLUGINS"


def _import_plugins() -> None:
    """Import the modules named in $NAS_PLUGINS (comma-separated): their `register_objective` and
    `register_sampler` calls then exist in this process too, as every worker of a shared run needs."""
    import importlib
    import os

    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise NasError(f"${PLUGINS_ENV}: cannot import {name!r}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
