"""Benchmark: per-trial cost of recording finished search trials in each Optuna storage, and of reading them back.

A search records one finished trial per candidate: every decision of the space as a categorical
parameter, two objective values, the user attributes the search sets (macs, params, predicted and
upper latency, objective, arch code) and its latency constraint. This times, side by side in one run,
recording `--trials` such trials through each (backend, path):

  memory    ask/tell, add_trials                 Optuna's in-memory storage: the cost without any storage
  sqlite    ask/tell, add_trials                 a SQLite file (run folders made before the journal default)
  journal   ask/tell, add_trials                 JournalStorage on a file (the search's default)
  postgres  ask/tell, add_trials                 with --postgres URL, or --start-postgres (a throwaway
                                                 local server, stopped at the end)

ask/tell is `study.ask(fixed_distributions)`, the attributes, `trial.set_constraint` and `study.tell`;
add_trials is `study.add_trials` of `optuna.trial.create_trial(...)` trials, `--batch` at a time (the
path a single-process search writes its batches through). Each repeat runs every case once on a fresh study, in alternating order, and the figure is the
median over repeats of (write time / trials). The read side is the call a sampler makes each trial,
`study.get_trials(deepcopy=False, states=(COMPLETE,))`, with `--read-sizes` trials in the storage:
cold (a fresh storage object: a new worker's first read) and warm (the median of repeated reads on a
live storage).

    python -m benchmarks.storage_cost --start-postgres --json storage_cost.json
"""
from __future__ import annotations

import contextlib
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from benchmarks import _postgres
from benchmarks._common import finish, parse, parser
from nas.search.storage import open_storage
from nas.space import decisions, encode, load_space, sample

QUICK = {"trials": 20, "repeats": 1, "batch": 10, "read_sizes": [20, 50], "reads": 2}
DIRECTIONS = ["maximize", "minimize"]
CONSTRAINT = "latency_ms"
PATHS = {"memory": ("ask_tell", "add_trials"), "sqlite": ("ask_tell", "add_trials"),
         "journal": ("ask_tell", "add_trials"), "postgres": ("ask_tell", "add_trials")}
MACHINE = "a shared 2-core VM (other work may run alongside): compare rows of one run, not runs"

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Record:
    """One finished trial as the search records it."""
    params: dict[str, Any]
    distributions: dict[str, CategoricalDistribution]
    values: list[float]
    user_attrs: dict[str, Any]
    constraint: float

    def frozen(self) -> FrozenTrial:
        return optuna.trial.create_trial(
            params=self.params, distributions=self.distributions, values=self.values, user_attrs=self.user_attrs,
            system_attrs={f"constraints:{CONSTRAINT}": self.constraint})  # the key trial.set_constraint writes


def records(space_file: str, n: int, seed: int) -> list[Record]:
    """`n` random architectures of the space, with made-up metrics of realistic types."""
    space = load_space(space_file)
    dists = {d.name: CategoricalDistribution(d.choices) for d in decisions(space)}
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        arch = sample(space, rng)
        latency = rng.uniform(5, 50)
        out.append(Record(
            params=dict(arch.items()), distributions=dists, values=[rng.uniform(0.5, 0.8), latency],
            user_attrs={"macs": rng.randrange(10**8, 10**9), "params": rng.randrange(10**6, 10**7),
                        "predicted_latency_ms": latency, "latency_upper_ms": latency * 1.1,
                        "objective": rng.random(), "arch": encode(space, arch)},
            constraint=latency * 1.1 - 20.0))
    return out


# ---- storages --------------------------------------------------------------------------------------

@contextlib.contextmanager
def storage(backend: str, folder: Path, tag: str, pg_url: str | None) -> Iterator[BaseStorage]:
    """A fresh storage of `backend` (a new file per tag; PostgreSQL: the one database, fresh studies)."""
    if backend == "memory":
        yield InMemoryStorage()
    elif backend == "journal":
        yield JournalStorage(JournalFileBackend(str(folder / f"{tag}.log")))
    else:
        rdb = open_storage(pg_url if backend == "postgres" else f"sqlite:///{folder / tag}.db")
        assert isinstance(rdb, RDBStorage)
        try:
            yield rdb
        finally:
            rdb.engine.dispose()


def new_study(store: BaseStorage, name: str) -> optuna.Study:
    # RandomSampler: a draw per parameter costs microseconds, so ask/tell times the storage, not a sampler.
    return optuna.create_study(storage=store, study_name=name, directions=DIRECTIONS,
                               sampler=optuna.samplers.RandomSampler(seed=0))


def write(path: str, study: optuna.Study, store: BaseStorage, recs: list[Record], batch: int) -> float:
    """Seconds to record `recs` in `study` through `path` (FrozenTrials are built before the clock starts,
    as the search has them already)."""
    frozen = [r.frozen() for r in recs]
    chunks = [frozen[i:i + batch] for i in range(0, len(frozen), batch)]
    start = time.perf_counter()
    if path == "ask_tell":
        for r in recs:
            trial = study.ask(r.distributions)
            for key, value in r.user_attrs.items():
                trial.set_user_attr(key, value)
            trial.set_constraint(CONSTRAINT, r.constraint)
            study.tell(trial, r.values)
    else:
        for chunk in chunks:
            study.add_trials(chunk)
    return time.perf_counter() - start


def write_costs(backends: list[str], recs: list[Record], args: Any, folder: Path,
                pg_url: str | None) -> dict[str, dict[str, Any]]:
    """ms per trial of every (backend, path): one fresh study per case and repeat, alternating order."""
    cases = [(b, p) for b in backends for p in PATHS[b]]
    per_trial: dict[tuple[str, str], list[float]] = {c: [] for c in cases}
    for r in range(args.repeats):
        for backend, path in cases if r % 2 == 0 else cases[::-1]:
            tag = f"w{r}-{backend}-{path}-{time.time_ns()}"
            with storage(backend, folder, tag, pg_url) as store:
                study = new_study(store, tag)
                seconds = write(path, study, store, recs, args.batch)
                stored = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                assert len(stored) == len(recs) and len(stored[-1].params) == len(recs[0].params), (backend, path)
                if backend == "postgres":
                    optuna.delete_study(study_name=tag, storage=store)  # leave a given server as it was
            per_trial[(backend, path)].append(seconds / len(recs) * 1e3)
            print(f"  repeat {r + 1}: {backend:8s} {path:10s} {per_trial[(backend, path)][-1]:8.3f} ms/trial",
                  flush=True)
    return {f"{b}/{p}": {"backend": b, "path": p, "repeat_ms_per_trial": v, "ms_per_trial": statistics.median(v)}
            for (b, p), v in per_trial.items()}


def read_costs(backends: list[str], recs: list[Record], args: Any, folder: Path,
               pg_url: str | None) -> dict[str, dict[str, Any]]:
    """Cold and warm `get_trials(COMPLETE)` ms with each of `--read-sizes` trials stored."""
    out: dict[str, dict[str, Any]] = {}
    frozen = [r.frozen() for r in recs]
    for backend in backends:
        tag = f"read-{backend}-{time.time_ns()}"
        with storage(backend, folder, tag, pg_url) as store:
            study, have = new_study(store, tag), 0
            fill: Callable[[list[FrozenTrial]], None] = study.add_trials
            for size in args.read_sizes:
                for i in range(have, size, args.batch):
                    fill(frozen[i:min(i + args.batch, size)])
                have = size
                out[f"{backend}/{size}"] = {"backend": backend, "trials": size, **_time_reads(
                    backend, store, folder, tag, pg_url, size, args.reads)}
            if backend == "postgres":
                optuna.delete_study(study_name=tag, storage=store)
    return out


def _time_reads(backend: str, store: BaseStorage, folder: Path, tag: str, pg_url: str | None, size: int,
                reads: int) -> dict[str, float]:
    def read(study: optuna.Study) -> float:
        start = time.perf_counter()
        got = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        seconds = time.perf_counter() - start
        assert len(got) == size, (backend, len(got), size)
        return seconds

    if backend == "memory":  # nothing to reopen: the in-memory study is the only copy
        cold = read(optuna.load_study(study_name=tag, storage=store))
    elif backend == "journal":  # a fresh storage replays the whole log as it opens: count that
        start = time.perf_counter()
        fresh = JournalStorage(JournalFileBackend(str(folder / f"{tag}.log")))
        cold = time.perf_counter() - start + read(optuna.load_study(study_name=tag, storage=fresh))
    else:
        with storage(backend, folder, tag, pg_url) as fresh:
            cold = read(optuna.load_study(study_name=tag, storage=fresh))
    live = optuna.load_study(study_name=tag, storage=store)
    read(live)
    return {"cold_ms": cold * 1e3, "warm_ms": statistics.median(read(live) for _ in range(reads)) * 1e3}


# ---- report ----------------------------------------------------------------------------------------

def print_tables(writes: dict[str, dict[str, Any]], reads: dict[str, dict[str, Any]], n: int, repeats: int,
                 space_file: str, n_params: int) -> None:
    print(f"\nrecording a finished trial ({n_params} categorical params, 2 values, 6 user attrs, 1 constraint; "
          f"{space_file}); median of {repeats} alternating repeats of {n} trials; machine: {MACHINE}")
    print(f"{'backend':10s}{'path':12s}{'ms/trial':>10s}{'x journal add':>15s}   repeats (ms/trial)")
    base = writes.get("journal/add_trials", {}).get("ms_per_trial")
    for row in writes.values():
        ratio = f"{row['ms_per_trial'] / base:.1f}x" if base else "-"
        spread = ", ".join(f"{v:.2f}" for v in row["repeat_ms_per_trial"])
        print(f"{row['backend']:10s}{row['path']:12s}{row['ms_per_trial']:10.3f}{ratio:>15s}   {spread}")
    print("\nreading: study.get_trials(deepcopy=False, states=(COMPLETE,)) with N trials stored; cold = first "
          "read through a fresh storage (a new worker), warm = median of repeated reads on a live one")
    print(f"{'backend':10s}{'N':>7s}{'cold ms':>10s}{'warm ms':>10s}")
    for row in reads.values():
        print(f"{row['backend']:10s}{row['trials']:7d}{row['cold_ms']:10.2f}{row['warm_ms']:10.3f}")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--trials", type=int, default=200, help="trials recorded per case and repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=50, help="trials per add_trials call")
    p.add_argument("--read-sizes", type=int, nargs="+", default=[200, 1000], help="stored trials at each read")
    p.add_argument("--reads", type=int, default=5, help="warm reads timed per size")
    p.add_argument("--folder", help="where the SQLite and journal files go (default: a temp folder); commits "
                   "wait for the disk, so put it on the disk a search would use")
    pg = p.add_mutually_exclusive_group()
    pg.add_argument("--postgres", metavar="URL", help="also a PostgreSQL server, e.g. "
                    "postgresql+psycopg://user@host:5432/db (studies it creates are deleted at the end)")
    pg.add_argument("--start-postgres", action="store_true",
                    help="also a throwaway local PostgreSQL server (initdb, pg_ctl and psql on PATH)")
    args = parse(p, QUICK, argv)

    recs = records(args.space, max([args.trials, *args.read_sizes]), args.seed)
    with contextlib.ExitStack() as stack:
        pg_url = args.postgres or (stack.enter_context(_postgres.local_server()) if args.start_postgres else None)
        backends = ["memory", "sqlite", "journal"] + (["postgres"] if pg_url else [])
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nas-storage-cost-", dir=args.folder)))
        print(f"optuna {optuna.__version__}; backends: {', '.join(backends)}; machine: {MACHINE}", flush=True)
        writes = write_costs(backends, recs[:args.trials], args, folder, pg_url)
        reads = read_costs(backends, recs, args, folder, pg_url)
    print_tables(writes, reads, args.trials, args.repeats, args.space, len(recs[0].params))
    return finish(args, {"space": args.space, "params_per_trial": len(recs[0].params), "trials": args.trials,
                         "repeats": args.repeats, "batch": args.batch, "optuna": optuna.__version__,
                         "postgres": "local throwaway server" if args.start_postgres else (
                             "given URL" if args.postgres else None),
                         "machine": MACHINE, "write": writes, "read": reads})


if __name__ == "__main__":
    sys.exit(main())
