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


def _predict_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="run folder (the --out of `unetkit train`)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders; TIFF stacks page by page")
    parser.add_argument("--out", required=True, help="output folder: NAME_labels.png/.tif, NAME_probs.tif, NAME_overlay.png")
    parser.add_argument("--tta", action="store_true", help="average the 8 flips and 90-degree rotations (8x slower)")
    parser.add_argument("--instances", action="store_true", help="also NAME_instances.tif: touching objects separated by watershed")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch", help="onnxruntime runs RUN/model.onnx (`unetkit export`)")
    parser.add_argument("--weights", choices=("auto", "best", "last"), default="auto")
    parser.add_argument("--tile-size", type=int, help="input tile side (rounded up to a valid size); default: from --memory-mb")
    parser.add_argument("--tile-batch", type=int, help="tiles per forward pass (default: as many as --memory-mb allows, <= 8)")
    parser.add_argument("--memory-mb", type=float, default=1024, help="activation memory for one tile batch (default 1024)")
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap for same-padding models (default 0.25)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, ...")
    parser.add_argument("--channels-last", action="store_true", help="torch backend: NHWC memory format")
    parser.add_argument("--threads", type=int, help="CPU threads of the backend")
    parser.add_argument("--no-probs", action="store_true", help="skip NAME_probs.tif")
    parser.add_argument("--no-overlay", action="store_true", help="skip NAME_overlay.png")
    parser.add_argument("--stream-above", type=float, default=16.0, metavar="MPIX", help="stream images above this many megapixels (default 16)")
    parser.add_argument("--foreground-class", type=int, default=1, help="instances: class of the objects (default 1)")
    parser.add_argument("--min-size", type=int, default=16, help="instances: drop objects under this many pixels (default 16)")
    parser.add_argument("--max-hole", type=int, help="instances: fill holes up to this many pixels (default: all; 0: none)")
    parser.add_argument("--seeds", choices=("distance", "probability"), default="distance", help="instances: watershed seeds")


def _predict(args: argparse.Namespace) -> None:
    from .postprocess import InstanceConfig
    from .predict import PredictConfig, predict_files

    try:
        instances = InstanceConfig(foreground_class=args.foreground_class, min_size=args.min_size, max_hole=args.max_hole, seeds=args.seeds)
        config = PredictConfig(
            tta=args.tta, tile_size=args.tile_size, tile_batch=args.tile_batch, memory_mb=args.memory_mb, overlap=args.overlap,
            backend=args.backend, device=args.device, channels_last=args.channels_last, threads=args.threads, weights=args.weights,
            probabilities=not args.no_probs, overlay=not args.no_overlay, instances=instances if args.instances else None,
            stream_above_mpix=args.stream_above,
        )  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc), fix="see `unetkit predict --help`") from None
    written = predict_files(args.run_dir, args.inputs, args.out, config)
    print(f"wrote {len(written)} files to {args.out}")


def _export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="run folder (the --out of `unetkit train`)")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument("--out", help="output file (default: RUN/model.onnx or RUN/model.torchscript.pt)")
    parser.add_argument("--weights", choices=("auto", "best", "last"), default="auto")


def _export(args: argparse.Namespace) -> None:
    from .export import export_run

    print(export_run(args.run_dir, args.format, args.out, args.weights).summary())


# name -> (help, add_arguments, run); commands register here.
COMMANDS = {
    "model": ("print a preset's layers, parameters, FLOPs and sizes", _model_args, _model),
    "demo": ("train, predict and evaluate on the embedded data; write a report", _demo_args, _demo),
    "evaluate": ("score predictions against ground truth (IoU, Dice, ISBI 2012 errors); JSON and HTML report", _evaluate_args, _evaluate),
    "predict": ("segment images of any size: labels, probabilities, overlays, instances", _predict_args, _predict),
    "export": ("export a run's model to ONNX or TorchScript and check parity", _export_args, _export),
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
