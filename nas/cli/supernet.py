"""`nas supernet ...`: a weight-sharing supernet of a search space. Each subcommand has its own parser
function (`_add_<name>`) and handler (`_<name>`); `register` wires them."""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Callable, Iterable

from nas.cli._common import say


def _step_bar(enabled: bool) -> Callable[[range], Iterable[int]] | None:
    """A tqdm bar over every step of the run, starting where a resumed run starts."""
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda steps: tqdm(steps, initial=steps.start, total=steps.stop, desc="supernet", unit="step",
                              dynamic_ncols=True, file=sys.stderr)


def _train(args: argparse.Namespace) -> int:
    from nas import api
    from nas.cli.train import _print_warning
    from nas.errors import DataWarning, TrainingError
    from nas.supernet.resume import TrainingInterrupted

    if args.threads is not None and args.threads < 1:
        raise TrainingError(f"--threads must be at least 1, got {args.threads}")
    space = api.load_space(args.space)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", DataWarning)
            warnings.showwarning = _print_warning
            result = api.train_supernet(space, args.data, args.out, epochs=args.epochs, threads=args.threads,
                                        batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                        n_random=args.random_subnets, device=args.device,
                                        checkpoint_every=args.checkpoint_every, progress=_step_bar(not args.quiet))
    except TrainingInterrupted as stop:
        say(f"interrupted: {stop}")
        return 130
    except KeyboardInterrupt:
        say(f"interrupted mid-step: {args.out} holds the last checkpoint, if one was written; run the same command "
            f"again to resume from it")
        return 130
    resumed = f"; resumed from step {result.resumed_from_step}, the whole run took {result.run_seconds:.1f} s" \
        if result.resumed_from_step else ""
    if result.resumed_from_step == result.steps:
        resumed = f"; {args.out} already held the finished run, nothing was trained"
    print(f"{space.name}: supernet trained {result.epochs} epoch{'s' if result.epochs != 1 else ''} "
          f"({result.steps} steps of batch {args.batch_size} on {result.n_train} images of {args.data}) "
          f"in {result.seconds:.1f} s on {result.device}{resumed}")
    print("largest subnet's loss per epoch: " + ", ".join(f"{x:.4f}" for x in result.loss))
    print("distillation loss per epoch: " + ", ".join(f"{x:.4f}" for x in result.distill))
    print(f"wrote {result.out}")
    return 0


def _add_train(cmds: Any) -> None:
    from nas.supernet.train import CHECKPOINT_SECONDS
    from nas.train import DEFAULT_LR

    p = cmds.add_parser(
        "train", help="train the supernet of a space once (resumable: run the same command again)",
        description="Train the weight-sharing supernet of a search space by the sandwich rule: each step trains the "
                    "largest subnet on the labels and distils the smallest and N random subnets from it. "
                    "Checkpoints go to --out every epoch, every --checkpoint-every seconds and on Ctrl-C; the same "
                    "command resumes from there, and refuses a checkpoint of other settings or another space.")
    p.add_argument("--space", required=True, metavar="S.yaml", help="search space YAML")
    p.add_argument("--data", default="digits", metavar="digits|DIR",
                   help="'digits' (scikit-learn's, default) or a folder of class subfolders of images")
    p.add_argument("--epochs", required=True, type=int, metavar="N", help="training epochs")
    p.add_argument("--out", required=True, metavar="SUPERNET.pt", help="the checkpoint to write (and resume from)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="training batch size (default 64)")
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"peak learning rate (default {DEFAULT_LR})")
    p.add_argument("--seed", type=int, default=0, help="weights, subnets drawn, dropout and batch order (default 0)")
    p.add_argument("--random-subnets", type=int, default=2, metavar="N",
                   help="random subnets distilled each step, besides the smallest (default 2)")
    p.add_argument("--checkpoint-every", type=float, default=CHECKPOINT_SECONDS, metavar="SECONDS",
                   help=f"also save this often within an epoch (default {CHECKPOINT_SECONDS:g})")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's own; on a busy "
                   "machine 1 can be several times faster; a resumed run repeats an unbroken one bit for bit only "
                   "with the same thread count)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def register(groups: Any) -> None:
    group = groups.add_parser("supernet", help="a weight-sharing supernet of a search space")
    cmds = group.add_subparsers(dest="command", required=True, metavar="{train}")
    _add_train(cmds)
