"""`unetkit predict` and `unetkit export`."""

from __future__ import annotations

import argparse

from ..config import WEIGHT_CHOICES
from ..errors import UserError


def predict_args(parser: argparse.ArgumentParser) -> None:
    from ..prediction import BACKENDS, OUT_FORMATS, SEEDS, InstanceConfig, PredictConfig

    # Defaults come from the configs: one source of truth.
    p, i = PredictConfig(), InstanceConfig()
    add = parser.add_argument
    add("run_dir", metavar="RUN", help="run folder (the --out of `unetkit train`), or a bioimage.io package that unetkit exported")
    add("inputs", nargs="+", metavar="INPUT", help="image files or folders; TIFF stacks page by page; zarr / OME-Zarr stores")
    add("--out", required=True, help="output folder: NAME_labels.png/.tif, NAME_probs.tif, NAME_overlay.png; a rerun skips "
        "images already predicted there with the same weights and settings; under torchrun the processes share the images")
    add("--out-format", choices=OUT_FORMATS, default=p.out_format, help="tiff: the files above (GeoTIFF tags kept); "
        "zarr: NAME.ome.zarr, an OME-Zarr image of the probabilities with the labels in labels/ (streamed)")
    add("--tta", action="store_true", help="average the 8 flips and 90-degree rotations (8x slower)")
    add("--no-calibrate", action="store_true", help="keep the class weighting of the loss in the probabilities")
    add("--instances", action=argparse.BooleanOptionalAction, help="also NAME_instances.tif: touching objects separated by "
        "watershed (default: on for a run trained on instance label maps)")
    add("--backend", choices=BACKENDS, default=p.backend, help="onnxruntime runs RUN/model.onnx (`unetkit export`)")
    add("--weights", choices=WEIGHT_CHOICES, default=p.weights, help="auto: final (trained on every image, --refit) "
        "once complete, else best (validation), else last")
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


def run_predict(args: argparse.Namespace) -> None:
    from ..prediction import InstanceConfig, PredictConfig, predict_files
    from ..world import env_rank

    model_or_run = _run_or_package(args.run_dir)
    try:
        instances = InstanceConfig(foreground_class=args.foreground_class, min_size=args.min_size, max_hole=args.max_hole, seeds=args.seeds)
        config = PredictConfig(
            tta=args.tta, calibrate=not args.no_calibrate, tile_size=args.tile_size, tile_batch=args.tile_batch, memory_mb=args.memory_mb, overlap=args.overlap,
            backend=args.backend, device=args.device, channels_last=args.channels_last, threads=args.threads, weights=args.weights,
            probabilities=not args.no_probs, overlay=not args.no_overlay, instances=instances if _write_instances(args, model_or_run) else False,
            stream_above_mpix=args.stream_above, out_format=args.out_format,
        )  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc), fix="see `unetkit predict --help`") from exc
    written = predict_files(model_or_run, args.inputs, args.out, config)
    if env_rank() == 0:  # under torchrun: one line for the job, not one per process
        print(f"wrote {len(written)} files to {args.out}")


def _run_or_package(path: str):
    """A run folder as its path (loaded with --weights), or a bioimage.io package unetkit wrote, loaded."""
    from ..zoo import is_package, load_package

    return load_package(path) if is_package(path) else path


def _write_instances(args: argparse.Namespace, model_or_run) -> bool:
    """--instances / --no-instances, else whether the run was trained on instance label maps."""
    from ..checkpoint import Run, read_data_config

    if args.instances is not None:
        return args.instances
    data = model_or_run.data if isinstance(model_or_run, Run) else read_data_config(model_or_run)
    return data.mask_kind == "instances"


def export_args(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("run_dir", metavar="RUN", help="run folder (the --out of `unetkit train`)")
    add("--format", choices=("onnx", "torchscript", "bioimageio"), default="onnx",
        help="bioimageio: a bioimage.io model package (zip) for Fiji/deepImageJ, ilastik, QuPath and the model zoo")
    add("--out", help="output file (default: model.onnx or model.torchscript.pt beside the weights, RUN/final for a final "
        "model; RUN/NAME.bioimageio.zip)")
    add("--weights", choices=WEIGHT_CHOICES, default="auto")
    bioimageio = parser.add_argument_group("bioimageio format")
    bioimageio.add_argument("--images", help="the images the run was trained on (folder) or one image: the package's test image "
                            "is the run's first validation image, else its first training image")
    bioimageio.add_argument("--name", help="model name (default: unetkit U-Net RUN)")
    bioimageio.add_argument("--author", action="append", default=[], help="author name (repeat for several; default: your login name)")
    bioimageio.add_argument("--license", default="CC-BY-4.0", help="SPDX license id of the weights (default CC-BY-4.0)")
    bioimageio.add_argument("--no-test", action="store_true", help="skip bioimageio.core's test of the written package")


def run_export(args: argparse.Namespace) -> None:
    if args.format == "bioimageio":
        from ..zoo import export_package

        if not args.images:
            raise UserError("--format bioimageio needs --images", fix="pass the folder of images the run was trained on (or one image)")
        result = export_package(args.run_dir, args.images, args.out, weights=args.weights, name=args.name, authors=tuple(args.author),
                                license=args.license, test=not args.no_test)
        print(result.summary())
        return
    from ..prediction.export import export_run

    print(export_run(args.run_dir, args.format, args.out, args.weights).summary())
