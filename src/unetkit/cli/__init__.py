"""`unetkit <command>`: thin over the API. Each command is an (add_arguments, run) pair.

A UserError prints as one line and exits 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from ..version import __version__
from .inspect import demo_args, evaluate_args, model_args, run_demo, run_evaluate, run_model
from .predict import export_args, predict_args, run_export, run_predict
from .train import plan_args, run_plan, run_train, train_args

# name -> (help, add_arguments, run); commands register here.
COMMANDS = {
    "model": ("print a preset's layers, parameters, FLOPs and sizes", model_args, run_model),
    "plan": ("fingerprint a training set and print the plan `train` would run (each choice with its reason)", plan_args, run_plan),
    "train": ("train a U-Net on a folder of images and a folder of masks", train_args, run_train),
    "demo": ("train, predict and evaluate on the embedded data; write a report", demo_args, run_demo),
    "evaluate": ("score predictions against ground truth (IoU, Dice, ISBI 2012 errors); JSON and HTML report", evaluate_args, run_evaluate),
    "predict": ("segment images of any size: labels, probabilities, overlays, instances", predict_args, run_predict),
    "export": ("export a run's model to ONNX or TorchScript (parity checked), or as a tested bioimage.io package", export_args, run_export),
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
