"""`unetkit train` and `unetkit plan`: the data folders and every training option."""

from __future__ import annotations

import argparse

from ..errors import UserError


def train_args(parser: argparse.ArgumentParser) -> None:
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
    from ..config import LOSSES, MASK_KINDS, NORMALIZATIONS, OPTIMIZERS, SCHEDULES, VAL_SPLITS
    from ..model import PRESETS

    def opt(*flags, **kwargs):
        parser.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)

    flag = argparse.BooleanOptionalAction
    opt("--preset", choices=list(PRESETS), help="model preset (default: default)")
    opt("--epochs", type=int, metavar="N", help="stop after N epochs (default 50 if no stop option is given)")
    opt("--steps", type=int, metavar="N", help="stop after N optimiser steps")
    opt("--time-budget", type=float, metavar="MIN", help="stop cleanly and save after MIN minutes, the final validation included")
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
        "encoder weights, an --init run's own, else per-image percentiles (per channel; percentile-joint: one range for all channels); meanstd: the training set's")
    opt("--val-fraction", type=float, metavar="F", help="hold out a share F of the files, as --val-split says (default 0.2)")
    opt("--val-split", choices=VAL_SPLITS, help="name: the last files by name; random: a seeded draw; group: the last "
        "file-name groups, e.g. tile7_*, tile8_* (default: planned; name without a plan)")
    opt("--val-names", nargs="+", metavar="STEM", help="hold out these files (stems; stack pages as stem:page)")
    opt("--folds", type=int, metavar="K", help="k-fold: hold out one of K contiguous blocks of files")
    opt("--fold", type=int, metavar="I", help="which fold to hold out (0-based)")
    opt("--refit", action=flag, help="then train the final model on every image, same steps (RUN/final; halves a time budget)")
    opt("--seed", type=int)
    opt("--workers", type=int, metavar="N", help="DataLoader processes to crop and augment beside the step (default 0)")
    opt("--device", help="auto (default), cpu, cuda, cuda:N")
    opt("--amp", action=flag, help="mixed precision on CUDA (default on)")
    opt("--cpu-bf16", action=flag, help="bf16 autocast on a CPU (default: on where the CPU has AVX512-BF16 or AMX)")
    opt("--channels-last", action=flag, help="NHWC memory layout, faster convolutions (default on)")
    opt("--val-share", type=float, metavar="F", help="validate when it keeps validation within F of the training time (default 0.05; 1: every epoch)")
    opt("--grad-clip", type=float, metavar="NORM", help="default 1; 0 switches clipping off")
    opt("--deterministic", action=flag, help="deterministic kernels: bitwise repeatable runs")
    opt("--save-every", type=int, metavar="N", help="also checkpoint every N steps")
    _scale_args(opt)
    _transfer_args(opt)
    opt("--bn-calibration", type=int, metavar="N", help="re-estimate BatchNorm statistics on up to N clean training patches before each validation (default 32; 0: off)")
    _augment_args(opt)


def _scale_args(opt) -> None:
    """Past one process (torchrun) and past memory (images read window by window)."""
    opt("--sync-bn", action=argparse.BooleanOptionalAction, help="SyncBatchNorm across torchrun processes")
    opt("--lazy-above", type=float, metavar="MPIX", dest="lazy_above_mpix", help="read training images larger than MPIX "
        "megapixels window by window from their (tiled) TIFF instead of holding them: the same patches, memory per patch "
        "(default 64)")


def _transfer_args(opt) -> None:
    from ..model import ENCODERS

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
    from ..data.masks import read_palette

    try:
        return read_palette(path)
    except UserError as exc:  # argparse reports its own errors: one line, exit 2
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _colour(text: str):
    from ..data.masks import parse_colour

    try:
        return parse_colour(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run_train(args: argparse.Namespace) -> None:
    from ..training import train

    train(args.images, args.masks, args.out, resume=args.resume, plan=not args.no_plan, progress=not args.quiet,
          **_options(args))


def _options(args: argparse.Namespace) -> dict:
    """The flat training options given: a recipe file's, then the flags (which override it)."""
    from ..training import read_recipe

    fixed = {"images", "masks", "out", "resume", "quiet", "run", "command", "debug", "config", "no_plan", "write", "memory_mb"}
    flags = {k: v for k, v in vars(args).items() if k not in fixed}
    options = {**(read_recipe(args.config) if args.config else {}), **flags}
    for key in ("val_names", "ignore_colours"):
        if options.get(key) is not None:
            options[key] = tuple(options[key])
    return options


def plan_args(parser: argparse.ArgumentParser) -> None:
    from ..planning import MEMORY_MB

    _data_args(parser)
    parser.add_argument("--out", dest="write", metavar="PLAN.yaml", help="write the plan as a recipe file "
                        "(`unetkit train --config PLAN.yaml` runs it)")
    parser.add_argument("--memory-mb", type=float, default=MEMORY_MB, help=f"training memory budget (default {MEMORY_MB})")
    _option_args(parser)  # given ones are kept as given; mask options say how masks are read, model options size the patch


def run_plan(args: argparse.Namespace) -> None:
    from ..training import plan, write_plan

    the_plan = plan(args.images, args.masks, memory_mb=args.memory_mb, **_options(args))
    print(the_plan.table())
    if args.write:
        write_plan(args.write, the_plan)
        print(f"plan: {args.write}")
