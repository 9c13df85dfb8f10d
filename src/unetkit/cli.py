"""`unetkit <command>`: thin over the API. Each command is an (add_arguments, run) pair.

A UserError prints as one line and exits 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys

from .errors import UserError
from .version import __version__


def _model_args(parser: argparse.ArgumentParser) -> None:
    from .model import ENCODERS, PRESETS

    parser.add_argument("--preset", default="default", help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="default: 512 x 512 (572 for valid padding)")
    parser.add_argument("--in-channels", type=int, default=None)
    parser.add_argument("--classes", type=int, default=None, help="number of classes")
    parser.add_argument("--encoder", help=f"a library encoder for the contracting path: {', '.join(ENCODERS)}")


def _model(args: argparse.Namespace) -> None:
    import torch

    from .model import create_model, summarize

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


def _demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="folder with images/ and labels/ (ISBI 2012 layout); default: generated EM-like data")
    parser.add_argument("--minutes", type=float, default=4.0, help="training time budget (default 4)")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)


def _demo(args: argparse.Namespace) -> None:
    from .demo import headline, run_demo

    results = run_demo(args.out, data=args.data, minutes=args.minutes, preset=args.preset, seed=args.seed)
    print(f"held-out metrics ({len(results['images'])} images as one set, one threshold): {headline(results)}")
    print(f"report: {results['report']}")


def _evaluate_args(parser: argparse.ArgumentParser) -> None:
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


def _evaluate(args: argparse.Namespace) -> None:
    from .evaluation import evaluate, format_summary

    results = evaluate(
        args.pred,
        args.gt,
        boundary_class=args.boundary_class,
        ignore_index=args.ignore_index,
        n_classes=args.classes,
        masks=_run_masks(args.run_folder) if args.run_folder else None,
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


def _run_masks(run: str):
    from .checkpoint import CONFIG_FILE, read_config
    from .config import DataConfig, from_dict

    return from_dict(DataConfig, read_config(run).get("data", {}), source=f"{run}/{CONFIG_FILE}")


def _train_args(parser: argparse.ArgumentParser) -> None:
    _data_args(parser)
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder to create (or continue with --resume)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    parser.add_argument("--no-plan", action="store_true", help="the fixed defaults for every option not given, instead of "
                        "the plan from the data (`unetkit plan`)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (the one-line summary still prints)")
    _option_args(parser)


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of images (PNG, JPEG, TIFF, stacks)")
    parser.add_argument("--masks", required=True, metavar="DIR", help="folder of masks, paired with the images by file stem")
    parser.add_argument("--config", metavar="RECIPE", help="options from a recipe file (YAML/JSON, the flags' names in snake_case, "
                        "e.g. RUN/recipe.yaml of an earlier run); flags given too override it")


def _option_args(parser: argparse.ArgumentParser) -> None:
    """The training options, each defaulting to "not given", so the plan's, the API's or a resumed run's values apply."""
    from .config import LOSSES, MASK_KINDS, NORMALIZATIONS, OPTIMIZERS, SCHEDULES, VAL_SPLITS
    from .model import PRESETS

    def opt(*flags, **kwargs):
        parser.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)

    flag = argparse.BooleanOptionalAction
    opt("--preset", choices=list(PRESETS), help="model preset (default: default)")
    opt("--epochs", type=int, metavar="N", help="stop after N epochs (default 50 if no stop option is given)")
    opt("--steps", type=int, metavar="N", help="stop after N optimiser steps")
    opt("--time-budget", type=float, metavar="MIN", help="stop cleanly and save after MIN minutes of training")
    opt("--batch-size", type=int, metavar="N", help="global batch (default 4)")
    opt("--patch-size", type=int, metavar="PX", help="network input side (default 256, or smaller images' side)")
    opt("--samples-per-epoch", type=int, metavar="N", help="default: patches enough to cover the images once")
    opt("--optimizer", choices=OPTIMIZERS, help="default adamw")
    opt("--lr", type=float, help="default 1e-3 (adamw) or 1e-2 (sgd)")
    opt("--weight-decay", type=float)
    opt("--momentum", type=float, help="SGD momentum (default 0.99, the paper's)")
    opt("--schedule", choices=SCHEDULES, help="learning-rate decay (default cosine)")
    opt("--warmup-steps", type=int, metavar="N")
    opt("--loss", choices=LOSSES, help="default ce (the paper's weighted cross-entropy)")
    opt("--weight-map", action=flag, help="the paper's border weights (default on)")
    opt("--w0", type=float, help="border weight (default 10)")
    opt("--sigma", type=float, help="border weight width in px (default 5)")
    opt("--class-weights", metavar="auto|median|none|W0,W1,..", help="class balance: auto (inverse frequency), median "
        "(median frequency), none, or one weight per class (default: planned; auto without a plan)")
    opt("--fg-oversample", type=float, metavar="P", help="share of patches centred on foreground (default 0)")
    opt("--classes", type=int, metavar="K", help="number of classes (default 2)")
    opt("--ignore-index", type=int, metavar="I", help="mask value counted in no loss or metric")
    opt("--foreground-value", type=int, metavar="V", help="raw mask value that is foreground (e.g. 0 when 0 marks the objects)")
    opt("--mask-kind", choices=MASK_KINDS, help="how masks hold classes (default auto: found from the training masks and printed; "
        "instances: label maps, 0 = background, 1..N one object each)")
    opt("--palette", metavar="FILE", dest="colours", type=_palette, help="colour masks: the class colours, one 'R,G,B' or '#RRGGBB' per line")
    opt("--ignore-colour", metavar="R,G,B", dest="ignore_colours", action="append", type=_colour,
        help="colour masks: a colour that counts nowhere (e.g. unlabeled); repeat for several")
    opt("--normalization", choices=NORMALIZATIONS, help="default auto: ImageNet mean/std after per-image percentiles for pretrained "
        "encoder weights, an --init run's own, else per-image percentiles; meanstd: the training set's")
    opt("--val-fraction", type=float, metavar="F", help="hold out a share F of the files, as --val-split says (default 0.2)")
    opt("--val-split", choices=VAL_SPLITS, help="name: the last files by name; random: a seeded draw; group: the last "
        "file-name groups, e.g. tile7_*, tile8_* (default: planned; name without a plan)")
    opt("--val-names", nargs="+", metavar="STEM", help="hold out these files (stems; stack pages as stem:page)")
    opt("--folds", type=int, metavar="K", help="k-fold: hold out one of K contiguous blocks of files")
    opt("--fold", type=int, metavar="I", help="which fold to hold out (0-based)")
    opt("--seed", type=int)
    opt("--workers", type=int, metavar="N", help="DataLoader processes (default 0)")
    opt("--device", help="auto (default), cpu, cuda, cuda:N")
    opt("--amp", action=flag, help="mixed precision on CUDA (default on)")
    opt("--cpu-bf16", action=flag, help="bf16 autocast on a CPU (default: on where the CPU has AVX512-BF16 or AMX)")
    opt("--channels-last", action=flag, help="NHWC memory layout, faster convolutions (default on)")
    opt("--val-share", type=float, metavar="F", help="validate when it keeps validation within F of the training time (default 0.1; 1: every epoch)")
    opt("--grad-clip", type=float, metavar="NORM", help="default 1; 0 switches clipping off")
    opt("--deterministic", action=flag, help="deterministic kernels: bitwise repeatable runs")
    opt("--save-every", type=int, metavar="N", help="also checkpoint every N steps")
    opt("--sync-bn", action=flag, help="SyncBatchNorm across torchrun processes")
    _transfer_args(opt)
    opt("--bn-calibration", type=int, metavar="N", help="re-estimate BatchNorm statistics on up to N clean training patches before each validation (default 32; 0: off)")
    _augment_args(opt)


def _transfer_args(opt) -> None:
    from .model import ENCODERS

    opt("--encoder", metavar="NAME", help=f"a library encoder (Hugging Face transformers) as the contracting path: {', '.join(ENCODERS)}")
    opt("--encoder-weights", metavar="imagenet|FILE|none", help="the encoder's first weights (default imagenet, fetched from the "
        "Hugging Face hub; FILE: safetensors or torch.save state dict in the library's key layout)")
    opt("--init", metavar="RUN", help="start from the weights of an earlier run of the same architecture (the head anew if the classes differ)")
    opt("--encoder-lr-scale", type=float, metavar="S", help="encoder learning rate = S x --lr (default 0.1 when pretrained, else 1)")
    opt("--freeze-encoder-steps", type=int, metavar="N", help="keep the encoder fixed for the first N steps (default 0)")
    opt("--freeze-encoder-bn-below", type=int, metavar="B", help="keep a pretrained encoder's BatchNorm statistics when the batch "
        "per process is below B (default 4; 0: never)")


def _augment_args(opt) -> None:
    flag = argparse.BooleanOptionalAction
    opt("--augment", action=flag, help="augmentation (default on)")
    opt("--elastic-std", type=float, metavar="PX", help="elastic displacement std on the coarse grid (default 10)")
    opt("--rotate", type=float, metavar="DEG", help="max rotation (default 180; 0 for oriented scenes)")
    opt("--scale", type=float, help="zoom range 1/(1+s)..1+s (default 0.15)")
    opt("--shift", type=float, metavar="PX")
    opt("--flip", action=flag)
    opt("--brightness", type=float)
    opt("--contrast", type=float)
    opt("--gamma", type=float)
    opt("--noise", type=float)
    opt("--blur", type=float, metavar="SIGMA")


def _palette(path: str):
    from .data.masks import read_palette

    try:
        return read_palette(path)
    except UserError as exc:  # argparse reports its own errors: one line, exit 2
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _colour(text: str):
    from .data.masks import parse_colour

    try:
        return parse_colour(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _train(args: argparse.Namespace) -> None:
    from .training import train

    train(args.images, args.masks, args.out, resume=args.resume, plan=not args.no_plan, progress=not args.quiet,
          **_options(args))


def _options(args: argparse.Namespace) -> dict:
    """The flat training options given: a recipe file's, then the flags (which override it)."""
    from .training import read_recipe

    fixed = {"images", "masks", "out", "resume", "quiet", "run", "command", "debug", "config", "no_plan", "write", "memory_mb"}
    flags = {k: v for k, v in vars(args).items() if k not in fixed}
    options = {**(read_recipe(args.config) if args.config else {}), **flags}
    for key in ("val_names", "ignore_colours"):
        if options.get(key) is not None:
            options[key] = tuple(options[key])
    return options


def _plan_args(parser: argparse.ArgumentParser) -> None:
    from .planning import MEMORY_MB

    _data_args(parser)
    parser.add_argument("--out", dest="write", metavar="PLAN.yaml", help="write the plan as a recipe file "
                        "(`unetkit train --config PLAN.yaml` runs it)")
    parser.add_argument("--memory-mb", type=float, default=MEMORY_MB, help=f"training memory budget (default {MEMORY_MB})")
    _option_args(parser)  # given ones are kept as given; mask options say how masks are read, model options size the patch


def _plan(args: argparse.Namespace) -> None:
    from .training import plan, write_plan

    the_plan = plan(args.images, args.masks, memory_mb=args.memory_mb, **_options(args))
    print(the_plan.table())
    if args.write:
        write_plan(args.write, the_plan)
        print(f"plan: {args.write}")


def _predict_args(parser: argparse.ArgumentParser) -> None:
    from .prediction import BACKENDS, SEEDS, InstanceConfig, PredictConfig

    # Defaults come from the configs: one source of truth.
    p, i = PredictConfig(), InstanceConfig()
    add = parser.add_argument
    add("run_dir", metavar="RUN", help="run folder (the --out of `unetkit train`)")
    add("inputs", nargs="+", metavar="INPUT", help="image files or folders; TIFF stacks page by page")
    add("--out", required=True, help="output folder: NAME_labels.png/.tif, NAME_probs.tif, NAME_overlay.png")
    add("--tta", action="store_true", help="average the 8 flips and 90-degree rotations (8x slower)")
    add("--no-calibrate", action="store_true", help="keep the class weighting of the loss in the probabilities")
    add("--instances", action=argparse.BooleanOptionalAction, help="also NAME_instances.tif: touching objects separated by "
        "watershed (default: on for a run trained on instance label maps)")
    add("--backend", choices=BACKENDS, default=p.backend, help="onnxruntime runs RUN/model.onnx (`unetkit export`)")
    add("--weights", choices=("auto", "best", "last"), default=p.weights)
    add("--tile-size", type=int, help="input tile side (rounded up to a valid size); default: from --memory-mb")
    add("--tile-batch", type=int, help="tiles per forward pass (default: as many as --memory-mb allows, <= 8)")
    add("--memory-mb", type=float, default=p.memory_mb, help=f"activation memory for one tile batch (default {p.memory_mb:g})")
    add("--overlap", type=float, default=p.overlap, help=f"tile overlap for same-padding models (default {p.overlap})")
    add("--device", default=p.device, help="torch device: auto, cpu, cuda, ...")
    add("--channels-last", action="store_true", help="torch backend: NHWC memory format")
    add("--threads", type=int, help="CPU threads of the backend")
    add("--no-probs", action="store_true", help="skip NAME_probs.tif")
    add("--no-overlay", action="store_true", help="skip NAME_overlay.png")
    add("--stream-above", type=float, default=p.stream_above_mpix, metavar="MPIX",
        help=f"stream images above this many megapixels (default {p.stream_above_mpix:g})")
    add("--foreground-class", type=int, default=i.foreground_class, help=f"instances: class of the objects (default {i.foreground_class})")
    add("--min-size", type=int, default=i.min_size, help=f"instances: drop objects under this many pixels (default {i.min_size})")
    add("--max-hole", type=int, default=i.max_hole, help="instances: fill holes up to this many pixels (default: all; 0: none)")
    add("--seeds", choices=SEEDS, default=i.seeds, help=f"instances: watershed seeds (default {i.seeds})")


def _predict(args: argparse.Namespace) -> None:
    from .prediction import InstanceConfig, PredictConfig, predict_files

    try:
        instances = InstanceConfig(foreground_class=args.foreground_class, min_size=args.min_size, max_hole=args.max_hole, seeds=args.seeds)
        config = PredictConfig(
            tta=args.tta, calibrate=not args.no_calibrate, tile_size=args.tile_size, tile_batch=args.tile_batch, memory_mb=args.memory_mb, overlap=args.overlap,
            backend=args.backend, device=args.device, channels_last=args.channels_last, threads=args.threads, weights=args.weights,
            probabilities=not args.no_probs, overlay=not args.no_overlay, instances=instances if _write_instances(args) else False,
            stream_above_mpix=args.stream_above,
        )  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc), fix="see `unetkit predict --help`") from exc
    written = predict_files(args.run_dir, args.inputs, args.out, config)
    print(f"wrote {len(written)} files to {args.out}")


def _write_instances(args: argparse.Namespace) -> bool:
    """--instances / --no-instances, else whether the run was trained on instance label maps."""
    return args.instances if args.instances is not None else _run_masks(args.run_dir).mask_kind == "instances"


def _export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="run folder (the --out of `unetkit train`)")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument("--out", help="output file (default: RUN/model.onnx or RUN/model.torchscript.pt)")
    parser.add_argument("--weights", choices=("auto", "best", "last"), default="auto")


def _export(args: argparse.Namespace) -> None:
    from .prediction.export import export_run

    print(export_run(args.run_dir, args.format, args.out, args.weights).summary())


# name -> (help, add_arguments, run); commands register here.
COMMANDS = {
    "model": ("print a preset's layers, parameters, FLOPs and sizes", _model_args, _model),
    "plan": ("fingerprint a training set and print the plan `train` would run (each choice with its reason)", _plan_args, _plan),
    "train": ("train a U-Net on a folder of images and a folder of masks", _train_args, _train),
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
