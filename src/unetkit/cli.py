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


# name -> (help, add_arguments, run); commands register here.
COMMANDS = {
    "model": ("print a preset's layers, parameters, FLOPs and sizes", _model_args, _model),
    "demo": ("train, predict and evaluate on the embedded data; write a report", _demo_args, _demo),
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
