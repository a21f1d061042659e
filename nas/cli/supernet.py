"""`nas supernet ...`: a weight-sharing supernet of a search space. Each subcommand has its own parser
function (`_add_<name>`) and handler (`_<name>`); `register` wires them: `train` trains the supernet once,
`eval` scores a fixed architecture as a subnet, `export` writes it with weights. The work is in `nas.api`."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from typing import Any, Callable, Iterable, Iterator

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



@contextlib.contextmanager
def _threads(args: argparse.Namespace) -> Iterator[None]:
    """--threads for the command, the thread count restored afterwards."""
    import torch

    from nas.errors import NasError

    if args.threads is not None and args.threads < 1:
        raise NasError(f"--threads must be at least 1, got {args.threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The options eval and export share, as `nas.api.supernet_eval` takes them."""
    return {"space": args.space, "data": args.data, "calib_images": args.calib_images, "seed": args.seed,
            "device": args.device}


def _add_common(p: argparse.ArgumentParser) -> None:
    from nas.supernet.evaluate import CALIBRATION_IMAGES

    p.add_argument("arch", metavar="ARCH.yaml", help="a fixed architecture of the supernet's space (e.g. from "
                   "`nas arch sample` or a search's best.yaml)")
    p.add_argument("--supernet", required=True, metavar="SUPERNET.pt", help="checkpoint from `nas supernet train`")
    p.add_argument("--space", metavar="YAML", help="the supernet's space file (default: the one the checkpoint "
                   "records)")
    p.add_argument("--data", metavar="digits|DIR", help="held-out and calibration images (default: the data the "
                   "checkpoint records, else digits)")
    p.add_argument("--calib-images", type=int, default=CALIBRATION_IMAGES, metavar="N",
                   help=f"training images that recompute the batch-norm statistics (default {CALIBRATION_IMAGES})")
    p.add_argument("--seed", type=int, default=0, help="which calibration images (default 0)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's own)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")


# ---- eval ----

def _eval(args: argparse.Namespace) -> int:
    from nas import api

    with _threads(args):
        result = api.supernet_eval(args.arch, args.supernet, recalibrate=not args.no_recalibrate, **_options(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    how = "batch norms recalibrated" if result.recalibrated else "the supernet's shared batch-norm statistics"
    print(f"{result.name}: top-1 {result.top1:.4f}, log-loss {result.log_loss:.4f} on the held-out images of "
          f"{result.data} ({result.resolution}x{result.resolution}, {how}, {result.seconds:.2f} s)")
    print(f"arch: {result.arch}")
    return 0


def _add_eval(sub: Any) -> None:
    p = sub.add_parser("eval", help="score a fixed architecture as a subnet: held-out top-1 and log-loss",
                       description="Score a fixed architecture with the weights it inherits from a trained "
                       "supernet: batch-norm statistics recomputed on a fixed sample of training images, then "
                       "top-1 and log-loss on the held-out split.")
    _add_common(p)
    p.add_argument("--no-recalibrate", action="store_true",
                   help="score with the supernet's shared batch-norm statistics as they are")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_eval)


# ---- export ----

def _export(args: argparse.Namespace) -> int:
    from nas import api

    with _threads(args):
        result = api.supernet_export(args.arch, args.supernet, args.out, class_name=args.class_name,
                                     **_options(args))
    score = result.score
    print(f"wrote {result.model} (py, class {result.class_name}, {score.resolution}x{score.resolution})")
    print(f"wrote {result.weights} (state_dict cut from {args.supernet}, batch norms recalibrated; load with "
          f"torch.load(..., weights_only=True))")
    print(f"held-out top-1 {score.top1:.4f}, log-loss {score.log_loss:.4f}; the module's outputs differ from "
          f"the supernet's by at most {result.max_abs_diff:.1e}")
    return 0


def _add_export(sub: Any) -> None:
    p = sub.add_parser("export", help="write a subnet as a standalone .py with its weights cut from the supernet",
                       description="Write a fixed architecture as DIR/model.py (standalone, torch only) and "
                       "DIR/weights.pt: its weights cut from the supernet, batch norms recalibrated. In eval mode "
                       "the module computes what the supernet computes for that subnet; `nas train ARCH.yaml "
                       "--weights DIR/weights.pt` fine-tunes it.")
    _add_common(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write model.py and weights.pt into")
    p.add_argument("--class-name", metavar="NAME", help="the network class's name (default: from the "
                   "architecture's name)")
    p.set_defaults(func=_export)


SUBCOMMANDS = (_add_train, _add_eval, _add_export)


def register(groups: Any) -> None:
    p = groups.add_parser("supernet", help="a weight-sharing supernet: train it once, score and export its subnets",
                          description="A weight-sharing supernet trained once for a space: any subnet's held-out "
                          "accuracy in a fraction of a second, and its weights.")
    sub = p.add_subparsers(dest="supernet_command", required=True, metavar="{train,eval,export}")
    for add in SUBCOMMANDS:
        add(sub)
