"""`unetkit model`, `unetkit demo` and `unetkit evaluate`."""

from __future__ import annotations

import argparse

from ..errors import UserError


def model_args(parser: argparse.ArgumentParser) -> None:
    from ..model import ENCODERS, PRESETS

    parser.add_argument("--preset", default="default", help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="default: 512 x 512 (572 for valid padding)")
    parser.add_argument("--in-channels", type=int, default=None)
    parser.add_argument("--classes", type=int, default=None, help="number of classes")
    parser.add_argument("--encoder", help=f"a library encoder for the contracting path: {', '.join(ENCODERS)}")


def run_model(args: argparse.Namespace) -> None:
    import torch

    from ..model import create_model, summarize

    fields = (("in_channels", args.in_channels), ("n_classes", args.classes), ("encoder", args.encoder))
    overrides = {k: v for k, v in fields if v is not None}
    try:
        with torch.device("meta"):  # the summary needs the structure only
            model = create_model(args.preset, **overrides)
    except ValueError as exc:
        raise UserError(str(exc), fix="see `unetkit model --help`") from exc
    height, width = args.input_size or ((572, 572) if model.config.padding == "valid" else (512, 512))
    try:
        print(summarize(model, height, width))
    except ValueError as exc:
        raise UserError(str(exc), fix="pass a valid --input-size") from exc


def demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="folder with images/ and labels/ (ISBI 2012 layout); default: generated EM-like data")
    parser.add_argument("--minutes", type=float, default=4.0, help="training time budget (default 4)")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)


def run_demo(args: argparse.Namespace) -> None:
    from .. import demo

    results = demo.run_demo(args.out, data=args.data, minutes=args.minutes, preset=args.preset, seed=args.seed)
    print(f"held-out metrics ({len(results['images'])} images as one set, one threshold): {demo.headline(results)}")
    print(f"report: {results['report']}")


def evaluate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="folder of predictions: NAME_probs.tif, NAME_labels.png or NAME.png")
    parser.add_argument("--gt", required=True, help="folder of ground-truth masks, paired by file stem")
    parser.add_argument("--boundary-class", type=int, help="class that separates objects (membrane: 0 for ISBI); enables Rand, information and warping errors")
    parser.add_argument("--ignore-index", type=int, help="ground-truth value that counts in no metric")
    parser.add_argument("--classes", type=int, default=2, help="number of classes (default 2)")
    parser.add_argument("--run", dest="run_folder", metavar="RUN", help="read the masks with the conventions of this training run (class count, "
                        "ignored value, colour table); replaces --classes and --ignore-index")
    parser.add_argument("--threshold-sweep", action="store_true", help="ISBI 2012 sweep over t = 0, 0.1, ...: best threshold and the value at 0.5")
    parser.add_argument("--instances", action="store_true", help="also AP at IoU 0.5:0.95, F1 and SEG of connected objects "
                        "(on by default with --run of a run trained on instance label maps: their instances are matched)")
    parser.add_argument("--no-warping", action="store_true", help="skip the warping error (the slowest score)")
    parser.add_argument("--json", help="write all results to this JSON file")
    parser.add_argument("--report", help="write report.html and its PNGs into this folder")


def run_evaluate(args: argparse.Namespace) -> None:
    from ..checkpoint import read_data_config
    from ..evaluation import evaluate, format_summary

    results = evaluate(
        args.pred,
        args.gt,
        boundary_class=args.boundary_class,
        ignore_index=args.ignore_index,
        n_classes=args.classes,
        masks=read_data_config(args.run_folder) if args.run_folder else None,
        threshold_sweep=args.threshold_sweep,
        instances=True if args.instances else None,
        warping=not args.no_warping,
        json_path=args.json,
        report_dir=args.report,
    )
    print(format_summary(results))
    for label, path in (("results", args.json), ("report", args.report and f"{args.report}/report.html")):
        if path:
            print(f"{label}: {path}")
