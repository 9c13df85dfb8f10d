"""`unetkit <command>`: thin over the API. Each command is an (add_arguments, run) pair.

A UserError prints as one line and exits 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import UserError


def _model_args(parser: argparse.ArgumentParser) -> None:
    from .model import PRESETS

    parser.add_argument("--preset", default="default", help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="default: 512 x 512 (572 for valid padding)")
    parser.add_argument("--in-channels", type=int, default=None)
    parser.add_argument("--classes", type=int, default=None, help="number of classes")


def _model(args: argparse.Namespace) -> None:
    from .model import create_model, summarize

    overrides = {k: v for k, v in (("in_channels", args.in_channels), ("n_classes", args.classes)) if v is not None}
    try:
        model = create_model(args.preset, **overrides)
    except ValueError as exc:
        raise UserError(str(exc), fix="see `unetkit model --help`") from None
    height, width = args.input_size or ((572, 572) if model.config.padding == "valid" else (512, 512))
    try:
        print(summarize(model, height, width))
    except ValueError as exc:
        raise UserError(str(exc), fix="pass a valid --input-size") from None


def _demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder")


def _demo(args: argparse.Namespace) -> None:
    # Placeholder until the demo issue lands: show the models it will train.
    print("unetkit demo: training, prediction and the report are not built yet; the models:")
    _model(argparse.Namespace(preset="default", input_size=None, in_channels=None, classes=None))


def _evaluate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="folder of predictions: NAME_probs.tif, NAME_labels.png or NAME.png")
    parser.add_argument("--gt", required=True, help="folder of ground-truth masks, paired by file stem")
    parser.add_argument("--boundary-class", type=int, help="class that separates objects (membrane: 0 for ISBI); enables Rand, information and warping errors")
    parser.add_argument("--ignore-index", type=int, help="ground-truth value that counts in no metric")
    parser.add_argument("--classes", type=int, default=2, help="number of classes (default 2)")
    parser.add_argument("--threshold-sweep", action="store_true", help="ISBI 2012 sweep over t = 0, 0.1, ...: best threshold and the value at 0.5")
    parser.add_argument("--instances", action="store_true", help="also AP at IoU 0.5:0.95, F1 and SEG of connected objects")
    parser.add_argument("--no-warping", action="store_true", help="skip the warping error (the slowest score)")
    parser.add_argument("--json", help="write all results to this JSON file")
    parser.add_argument("--report", help="write report.html and its PNGs into this folder")


def _evaluate(args: argparse.Namespace) -> None:
    from .evaluation import evaluate, format_summary

    results = evaluate(
        args.pred,
        args.gt,
        boundary_class=args.boundary_class,
        ignore_index=args.ignore_index,
        n_classes=args.classes,
        threshold_sweep=args.threshold_sweep,
        instances=args.instances,
        warping=not args.no_warping,
        json_path=args.json,
        report_dir=args.report,
    )
    print(format_summary(results))


# name -> (help, add_arguments, run); commands register here.
COMMANDS = {
    "model": ("print a preset's layers, parameters, FLOPs and sizes", _model_args, _model),
    "demo": ("train, predict and evaluate on the embedded data; write a report", _demo_args, _demo),
    "evaluate": ("score predictions against ground truth (IoU, Dice, ISBI 2012 errors); JSON and HTML report", _evaluate_args, _evaluate),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetkit", description="U-Net segmentation: train, predict, evaluate.")
    parser.add_argument("--version", action="version", version=f"unetkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"unetkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetkit {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
