"""`nas export ARCH.yaml --out FILE`: wiring only; the work is in `nas.api.export` (`nas.export`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

_SUFFIXES = {".py": "py", ".pt": "torchscript", ".ts": "torchscript", ".onnx": "onnx"}


def _format(args: argparse.Namespace) -> str:
    from nas.export import ExportError

    if args.format:
        return args.format
    fmt = _SUFFIXES.get(Path(args.out).suffix.lower())
    if fmt is None:
        raise ExportError(f"{args.out}: cannot tell the format from the suffix {Path(args.out).suffix!r}; "
                          f"give --format py, torchscript or onnx, or use .py, .pt, .ts or .onnx")
    return fmt


def _export(args: argparse.Namespace) -> int:
    from nas import api
    from nas.export import class_name_for, weights_path  # names for the message, decided by nas.export
    from nas.space import load_fixed

    fmt = _format(args)
    space = load_fixed(args.file)
    out = api.export(space, None, fmt, args.out, weights=args.weights, class_name=args.class_name,
                     num_classes=args.num_classes)
    what = f"class {class_name_for(space, args.class_name)}, " if fmt == "py" else ""
    inside = ", with the weights" if args.weights and fmt != "py" else ""
    print(f"wrote {out} ({fmt}, {what}{space.name}, {args.num_classes or space.num_classes} classes{inside})")
    if args.weights and fmt == "py":
        print(f"wrote {weights_path(out)} (state_dict; load with torch.load(..., weights_only=True))")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def register(groups: Any) -> None:
    p = groups.add_parser(
        "export", help="write a fixed architecture as a standalone .py (torch only), TorchScript or ONNX",
        description="Write a fixed architecture as a standalone PyTorch module (.py, whose only third-party "
        "import is torch, with build_model(num_classes=...)), a TorchScript file (scripted, any input size) "
        "or ONNX (opset 18, batch 1, the architecture's resolution).")
    p.add_argument("file", metavar="ARCH.yaml", help="fixed-architecture YAML (e.g. from `nas arch sample`)")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write")
    p.add_argument("--format", choices=("py", "torchscript", "onnx"),
                   help="default: from --out's suffix (.py; .pt or .ts for torchscript; .onnx)")
    p.add_argument("--weights", metavar="STATE_DICT",
                   help="state_dict file (torch.load(weights_only=True)) whose keys and shapes must fit the "
                   "architecture; torchscript and onnx carry it inside, py saves it checked beside the module "
                   "as OUT with suffix .pth")
    p.add_argument("--num-classes", type=_positive, metavar="N",
                   help="classifier outputs (default: the file's num_classes); --weights must match it")
    p.add_argument("--class-name", metavar="NAME",
                   help="py only: the network class's name (default: from the architecture's name)")
    p.set_defaults(func=_export)
