"""`nas search` and `nas report`: argument parsing, progress display and wiring to `nas.api`."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from nas.cli._common import add_profile_options, bars, busy_note, latency_model, say
from nas.search.objectives import objective_names
from nas.search.samplers import sampler_help

# A change of the machine's speed between the search's start and its winner check worth a line: beyond
# how much a network's plain timing moved pass to pass on this busy 2-core host (torch.utils.benchmark
# on 50 sandglass networks, two passes: 11% CV).
SPEED_CHANGE = 0.15


class BarProgress:
    """tqdm bar: trials done, feasible count, best objective so far, table entries measured."""

    def __init__(self, objective: str, table: Any) -> None:
        self.objective, self.table, self.bar = objective, table, None
        self._entries = len(table)

    def start(self, total: int | None, stats: Any) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="search", unit="trial", dynamic_ncols=True, file=sys.stderr)

    def _postfix(self, stats: Any) -> dict[str, str]:
        out = {"feasible": str(stats.feasible), "best": _fmt_objective(self.objective, stats.best)}
        measured = len(self.table) - self._entries
        if measured:
            out["measured units"] = str(measured)
        return out

    def update(self, stats: Any) -> None:
        self.bar.update(1)
        if stats.new % 10 == 1 or self.bar.total == stats.new:  # postfix redraws cost more than the trial
            self.bar.set_postfix(self._postfix(stats), refresh=False)

    def close(self, stats: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix(self._postfix(stats), refresh=False)
            self.bar.close()


class LogProgress:
    """--quiet: a log line every 10 seconds instead of a bar."""

    def __init__(self, objective: str) -> None:
        self.objective, self.last = objective, 0.0

    def start(self, total: int | None, stats: Any) -> None:
        self.total, self.last = total, time.monotonic()

    def update(self, stats: Any) -> None:
        if time.monotonic() - self.last >= 10:
            self.last = time.monotonic()
            self._line(stats)

    def _line(self, stats: Any) -> None:
        of = f"/{self.total}" if self.total else ""
        print(f"search: {stats.new}{of} trials, {stats.feasible} feasible in the study, "
              f"best {_fmt_objective(self.objective, stats.best)}", file=sys.stderr)

    def close(self, stats: Any) -> None:
        self._line(stats)


def _fmt_objective(objective: str, value: float | None) -> str:
    if value is None:
        return "-"
    if objective == "macs":
        return f"{value / 1e6:.1f}M MACs"
    if objective == "params":
        return f"{value / 1e6:.2f}M params"
    return f"{value:.4g}"


def _search(args: argparse.Namespace) -> int:
    from nas import api
    from nas.search.target import parse_latency

    # Read every option before touching any file, so bad input leaves earlier runs alone.
    target = parse_latency(args.target_latency)
    settings = api.SearchSettings(
        target_ms=target, objective=args.objective, sampler=args.sampler, seed=args.seed,
        mode="single" if args.single_objective else "multi", n_trials=args.n_trials, timeout_s=args.timeout,
        run_dir=args.run_dir, storage=args.storage, study_name=args.study_name, data=args.data, epochs=args.epochs,
        supernet=args.supernet, supernet_metric=args.supernet_metric,
        latency_margin=_margin(args.latency_margin), fit=args.fit, workers=args.workers,
        heartbeat_s=args.heartbeat, grace_s=args.grace)
    latency = latency_model(args)
    search = api.prepare_search(args.space, settings, latency, say=say, bars=bars(args.quiet))
    if search.fit_note:
        print(f"warning: {search.fit_note}", file=sys.stderr)
    if search.margin_note:
        print(f"warning: {search.margin_note}", file=sys.stderr)
    print(f"latency margin {search.margin:.1%}: feasible means predicted x {1 + search.margin:.3f} <= "
          f"{target:g} ms", file=sys.stderr)
    display = LogProgress(args.objective) if args.quiet else BarProgress(args.objective, latency.table)
    earlier = search.stats.total
    if earlier:
        print(f"resuming study {search.study_name!r} ({earlier} trials) in {search.storage_url}", file=sys.stderr)
    if search.shared:
        print(f"shared study {search.study_name!r} in {search.storage_url}: "
              f"{args.workers or 1} worker(s); more join with `nas worker {search.run_dir}`", file=sys.stderr)
    outcome = api.run_search(search, progress=display, measure=not args.no_measure, say=say,
                             table_path=str(latency.table.path) if latency.table.path else None).outcome
    _print_outcome(outcome)
    return 130 if outcome.interrupted else 0


def _margin(text: str | None) -> float | None:
    """--latency-margin: '5%' or '0.05' -> 0.05; None keeps the table's default."""
    if text is None:
        return None
    from nas.errors import NasError

    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise NasError(f"--latency-margin: {text!r} is not a fraction or a percentage, e.g. 0.05 or 5%") from None
    return value


def _print_outcome(outcome: Any) -> None:
    stats, summary = outcome.stats, outcome.summary
    if outcome.interrupted:
        print(f"interrupted: {stats.new} completed trials of this run are kept in {outcome.storage_url}",
              file=sys.stderr)
    print(f"{stats.new} trials in {outcome.elapsed_s:.1f} s ({stats.total} in the study), {summary['n_feasible']} "
          f"feasible, Pareto front of {summary['pareto_size']}")
    _print_winner(summary)
    recalibration = summary.get("correction_recalibrated")
    if recalibration:
        factor = recalibration["factor"]
        print(f"note: the winner check measured its {recalibration['networks']} networks {abs(factor - 1):.0%} "
              f"{'over' if factor > 1 else 'under'} the table's prediction (median, at the table's level): the "
              f"table's correction is rescaled by {factor:.3f} for the next search ({recalibration['table']})")
    note = busy_note(summary.get("busy_unit_groups") or {}, "the trials")
    if note:
        print(f"note: {note}")
    print(f"wrote {outcome.run_dir}: {' '.join(summary['files'])}")


def _print_winner(summary: dict[str, Any]) -> None:
    """The winner as the check left it (or the least violating trials when none was feasible): its
    prediction and measurement, why it is not simply the best prediction, the machine's speed during the
    check and what a plain timing of it reads then, and a caution when that can be over the target."""
    best = summary.get("best")
    if best is None:
        print(f"no feasible trial: nothing predicted at or under {summary['target_latency_ms']:g} ms; "
              f"the least violating are:")
        for row in summary.get("least_violating", []):
            print(f"  trial {row['number']}: {row['predicted_latency_ms']:.2f} ms  {row['arch']}")
    else:
        measured = ""
        if best.get("measured_latency_ms") is not None:
            measured = f", measured {best['measured_latency_ms']:.2f} ms"
            if best.get("measured_raw_ms") is not None:
                measured += f" ({best['measured_raw_ms']:.2f} ms as timed)"
        label = "winner" if best.get("within_guard", best.get("meets_target", True)) \
            else "NOT VERIFIED (fastest measured)"
        predicted = f"predicted {best['predicted_latency_ms']:.2f} ms"
        if best.get("predicted_at_check_ms") is not None:
            predicted += f" ({best['predicted_at_check_ms']:.2f} ms at the check's speed)"
        if best.get("searched_latency_ms") is not None:  # units timed again, or a rescaled correction, moved it
            predicted += f" ({best['searched_latency_ms']:.2f} ms when the search predicted it; the table changed since)"
        print(f"{label}: trial {best['number']}, {_fmt_objective(summary['objective'], best['objective'])}, "
              f"{predicted}{measured} (target {summary['target_latency_ms']:g} ms)")
        if summary.get("winner_note"):
            print(f"note: {summary['winner_note']}")
        if best.get("measured_level_ms") is not None:
            start, check = summary["machine_speed_at_start"], summary["machine_speed"]
            print(f"speed: predictions at {start:.2f}x the table's level (the machine at the start), measurements "
                  f"at {check:.2f}x (the machine during the winner check)")
            if abs(check / start - 1) > SPEED_CHANGE:
                how = f"{start / check:.2f}x faster" if check < start else f"{check / start:.2f}x slower"
                print(f"note: the machine ran {how} during the winner check than when the search started: the "
                      f"winner was chosen by what it measured then, not by its prediction")
            if summary.get("plain_timing_range_ms"):
                # What a plain timing of the winner may read while the machine runs as it did during the check.
                low, high = summary["machine_speed_range"]
                fastest, slowest = summary["plain_timing_range_ms"]
                print(f"as timed: the machine ran {low:.2f}-{high:.2f}x the level during the check; a plain timing "
                      f"of the winner reads about {fastest:.1f}-{slowest:.1f} ms at those speeds")
                # glibc's defaults may page-fault on every call in a fresh process (1.4-1.8x measured).
                from proxies.latency.allocator import SHELL_SETTINGS

                print(f"  in a process that keeps freed memory, as every timing here; on Linux, start Python with "
                      f"{SHELL_SETTINGS} to time it so")
        if summary.get("winner_caution"):
            print(f"caution: {summary['winner_caution']}")


def _report(args: argparse.Namespace) -> int:
    from nas import api

    outcome = api.report(args.run_dir, measure=not args.no_measure)
    summary = outcome["summary"]
    print(f"{summary['n_trials']} trials, {summary['n_feasible']} feasible, Pareto front of {summary['pareto_size']}")
    _print_winner(summary)
    print(f"wrote {args.run_dir}: {' '.join(summary['files'])}")
    return 0


def register(groups: Any) -> None:
    p = groups.add_parser(
        "search", help="search a space under a target latency and write a run folder",
        description="Explore a search space with an Optuna sampler: maximise an accuracy stand-in and minimise the "
                    "latency predicted by the device's table, with latency <= target as a constraint. Running "
                    "the same command again resumes the study and adds trials.")
    p.add_argument("--space", required=True, metavar="YAML", help="search space file (e.g. search_spaces/sandglass.yaml)")
    p.add_argument("--target-latency", required=True, metavar="T", help="latency budget: 20ms, 1.5ms, 500us, 0.02s")
    p.add_argument("--objective", default="macs", help=f"what to maximise: {', '.join(objective_names())}, or "
                   f"proxies joined by '+' for a z-scored ensemble, e.g. zen+naswot (default macs)")
    p.add_argument("--data", metavar="digits|DIR", help="--objective trained: training data (digits or an image folder)")
    p.add_argument("--epochs", type=int, help="--objective trained: epochs per candidate")
    p.add_argument("--supernet", metavar="SUPERNET.pt", help="--objective supernet: the trained supernet "
                   "(`nas supernet train`); --data: its held-out images (default: what it was trained on)")
    p.add_argument("--supernet-metric", choices=("top1", "log_loss"), default="top1",
                   help="--objective supernet: maximise held-out top-1 (default) or the negative log-loss")
    p.add_argument("--single-objective", action="store_true",
                   help="maximise the objective alone under the constraint (default: an objective/latency front)")
    p.add_argument("--sampler", default="auto", help=sampler_help())
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--heartbeat", type=float, default=5.0, metavar="SECONDS", help="shared mode: a worker stamps its "
                   "running trial this often (default 5)")
    p.add_argument("--grace", type=float, default=30.0, metavar="SECONDS", help="shared mode: a running trial whose "
                   "heartbeat stood still this long is failed and retried once by another worker (default 30)")
    p.add_argument("--n-trials", type=int, default=300, help="trials to add in this run (default 300); in shared mode "
                   "the COMPLETE trials all workers add together")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop adding trials after this long")
    p.add_argument("--run-dir", metavar="DIR", help="run folder (default runs/<space>-<target>, e.g. runs/sandglass-20ms)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage: any SQLAlchemy URL (postgresql+psycopg://user@host/db "
                   "to share a study between machines) or a journal file, journal:PATH or PATH.journal (default: "
                   "DIR/study.journal; a run folder with a study.db from an earlier version keeps it)")
    p.add_argument("--workers", type=int, metavar="N", help="shared mode: start N worker processes that ask and tell "
                   "on the stored study, --n-trials in all (more can join with `nas worker RUN_DIR`)")
    p.add_argument("--study-name", metavar="NAME", help="study name in the storage (default: the run folder's name)")
    p.add_argument("--latency-margin", metavar="M", help="feasible means predicted x (1 + M) <= target, so the "
                   "search is not drawn to networks the table under-predicts: 0.05 or 5%% (default: the upper end "
                   "of the table's residuals on networks it did not see, mean + 1.645 sd; 5%% before it has any)")
    p.add_argument("--fit", type=int, default=12, metavar="N", help="when the table has no correction yet, measure "
                   "N networks end to end first and fit one (default 12; 0: use the plain sum)")
    p.add_argument("--no-measure", action="store_true", help="do not measure the winner end to end")
    p.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    add_profile_options(p)
    p.set_defaults(func=_search)

    p = groups.add_parser("report", help="rebuild a run folder's tables, plots, winner and exports from its study",
                          description="Rebuild trials.csv, pareto.csv/png/html, best.yaml, best_model.py/onnx and "
                                      "summary.json of a run folder from its study storage.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--no-measure", action="store_true", help="do not measure the winner end to end")
    p.set_defaults(func=_report)
