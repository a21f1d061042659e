"""`nas train`: train one fixed architecture (from scratch, or fine-tuned from --weights) and print its held-out
top-1."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from nas.cli._common import progress


def _print_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                   line: str | None = None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _train(args: argparse.Namespace) -> int:
    from nas import api
    from nas.errors import DataWarning, TrainingError
    from nas.space import load_fixed

    space = load_fixed(args.arch)
    if args.threads is not None and args.threads < 1:
        raise TrainingError(f"--threads must be at least 1, got {args.threads}")
    with warnings.catch_warnings():
        warnings.simplefilter("always", DataWarning)
        warnings.showwarning = _print_warning
        result = api.train(space, args.data, args.epochs, threads=args.threads, weights_out=args.out,
                           weights=args.weights,
                           batch_size=args.batch_size, lr=args.lr, label_smoothing=args.label_smoothing,
                           seed=args.seed, device=args.device,
                           progress=progress(not args.quiet and not args.json, "training", "epoch"))
    info = {"name": space.name, "file": args.arch, "data": args.data, **result.to_dict()}
    if args.weights:
        info["start_weights"] = args.weights
    if args.out:
        info["weights"] = args.out
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    losses = ", ".join(f"{x:.4f}" for x in result.train_loss)
    start = f"fine-tuned from {args.weights}, " if args.weights else ""
    print(f"{space.name}: top-1 {result.top1:.4f} on {result.n_test} held-out images of {args.data} "
          f"({start}{result.n_train} trained on, {result.epochs} epoch{'s' if result.epochs != 1 else ''}, "
          f"{result.resolution}x{result.resolution}, {result.seconds:.1f} s on {result.device})")
    print(f"train loss per epoch: {losses}")
    if args.out:
        print(f"wrote {args.out}: trained state_dict")
    return 0


def register(groups: Any) -> None:
    from nas.train import DEFAULT_LR

    p = groups.add_parser(
        "train", help="train a fixed architecture from scratch and print its held-out top-1",
        description="Train a fixed architecture from scratch on scikit-learn's 8x8 digits (upsampled to its "
                    "resolution) or an image folder (one subfolder per class), then print top-1 on a fixed, "
                    "stratified 20% test split. SGD with Nesterov momentum and a cosine schedule; seeded.")
    p.add_argument("arch", metavar="ARCH.yaml", help="a fixed architecture (e.g. from `nas arch sample`)")
    p.add_argument("--data", required=True, metavar="digits|DIR",
                   help="'digits' (scikit-learn's, shipped on disk) or a folder of class subfolders of images")
    p.add_argument("--epochs", required=True, type=int, metavar="N", help="training epochs")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="training batch size (default 64)")
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"peak learning rate (default {DEFAULT_LR})")
    p.add_argument("--label-smoothing", type=float, default=0.0, metavar="X", help="cross-entropy label smoothing (default 0)")
    p.add_argument("--seed", type=int, default=0, help="weights, dropout and batch order (default 0)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's own, "
                   "usually every core; on a busy machine fewer can be much faster)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print JSON instead of text (implies --quiet)")
    p.add_argument("--out", metavar="WEIGHTS.pt", help="save the trained state_dict here (written atomically)")
    p.add_argument("--weights", metavar="STATE_DICT", help="fine-tune from this state_dict (e.g. weights.pt from "
                   "`nas supernet export`) instead of training from scratch; its keys and shapes must fit")
    p.set_defaults(func=_train)
