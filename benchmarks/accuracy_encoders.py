"""Issue 14's benchmarks: library encoders against the default U-Net, and transfer with --init.

`scratch`: on each data set, the default preset and U-Nets with resnet18 /
resnet34 encoders trained from random weights for the same CPU time, then
the held-out images predicted and scored (ISBI: the challenge's errors on
sections 25-29; DSB 2018: foreground IoU on a seeded 20% of the ids;
Dubai aerial: mean IoU over 5 classes on tile 8); s per 512 x 512 image.
ImageNet weights cannot be fetched on these machines: with `--weights-dir
DIR` holding the hub's `model.safetensors` of each encoder as
`DIR/resnet18.safetensors` ..., contenders `resnet18-imagenet` ... join.

`speed`: s per 512 x 512 image of each model on its own (the figure in the
other two is taken beside whatever else runs).

`transfer`: a source model trained on one data set, fine-tuned with --init on
another with a few of its labelled images, against training from scratch at
the same budget: accuracy against labelled images (`synthetic-isbi`: the
embedded EM-like sections -> ISBI with 1, 3, 10, 25 sections; `isbi-dsb`:
ISBI -> DSB 2018 in grey with 5, 10, 25, 100% of its training images).

    .venv/bin/python benchmarks/accuracy_encoders.py scratch                        # 3 data sets x 3 models x 15 min
    .venv/bin/python benchmarks/accuracy_encoders.py scratch --steps 2 --datasets isbi2012 --only resnet18   # a check
    .venv/bin/python benchmarks/accuracy_encoders.py transfer --pair synthetic-isbi --minutes 5
    .venv/bin/python benchmarks/accuracy_encoders.py transfer --pair isbi-dsb --model resnet18 --steps 2    # a check
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/accuracy_encoders.py speed      # s per 512 x 512 image, quiet machine

Data sets are read from ../shared/data (--data-root) and prepared once under --out (DSB:
RGB without its constant alpha, instance maps as 0/255 foreground masks).
Results go to benchmarks/results/accuracy_encoders-*.json via common.save.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402
from unetkit import evaluate, load, train  # noqa: E402
from unetkit.io import list_images, read_image, read_mask, write_image  # noqa: E402
from unetkit.prediction import PredictConfig, Predictor  # noqa: E402
from unetkit.synthetic import write_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ISBI_HELD_OUT = ("25", "26", "27", "28", "29")
DUBAI_IGNORE = ((155, 155, 155), (0, 0, 0))  # "unlabeled" and the black that also occurs
MODELS = {  # name -> model options (all on the default preset)
    "default": {},
    "resnet18": {"encoder": "resnet18", "encoder_weights": "none"},
    "resnet34": {"encoder": "resnet34", "encoder_weights": "none"},
    "convnextv2_atto": {"encoder": "convnextv2_atto", "encoder_weights": "none"},
}


# ----------------------------------------------------------------- data sets: (images, masks, held-out stems, options, scoring)


def isbi(root: Path, out: Path) -> dict:
    data = root / "isbi2012" / "train"
    return dict(images=data / "images", masks=data / "labels", val=ISBI_HELD_OUT, options={}, boundary_class=0)


def dsb(root: Path, out: Path, grey: bool = False) -> dict:
    """DSB 2018 as RGB (or grey) images and 0/255 foreground masks, written once; 20% of the ids held out (seed 0)."""
    folder = out / "data" / ("dsb2018-grey" if grey else "dsb2018")
    source = root / "dsb2018"
    names = sorted(p.stem for p in (source / "images").glob("*.png"))
    if not (folder / "done").exists():
        for name in names:
            image = read_image(source / "images" / f"{name}.png")[:3]
            write_image(folder / "images" / f"{name}.png", image.mean(0).round().astype(np.uint8) if grey else image)
            write_image(folder / "masks" / f"{name}.png", (read_mask(source / "labels" / f"{name}.png") > 0).astype(np.uint8) * 255)
        (folder / "done").touch()
    held = sorted(np.random.default_rng(0).choice(names, size=len(names) // 5, replace=False).tolist())
    return dict(images=folder / "images", masks=folder / "masks", val=tuple(held), options={}, boundary_class=None)


def dubai(root: Path, out: Path) -> dict:
    """Dubai aerial with every mask as RGB (some are palette PNGs, read as indices), written once; tile 8 held out."""
    from PIL import Image

    data, folder = root / "dubai_aerial", out / "data" / "dubai_aerial"
    if not (folder / "done").exists():
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        for mask in sorted((data / "masks").glob("*.png")):
            Image.open(mask).convert("RGB").save(folder / "masks" / mask.name)
        (folder / "done").touch()
    held = tuple(sorted(p.stem for p in (data / "images").glob("tile8_*")))
    return dict(images=data / "images", masks=folder / "masks", val=held, options={"ignore_colours": DUBAI_IGNORE}, boundary_class=None)


DATASETS = {"isbi2012": isbi, "dsb2018": dsb, "dubai_aerial": dubai}


# ----------------------------------------------------------------- one contender


def budget(args) -> dict:
    return {"steps": args.steps} if args.steps else {"time_budget": args.minutes}


def train_and_score(name: str, data: dict, run: Path, options: dict, args, images: Path | None = None, masks: Path | None = None) -> dict:
    """Train (unless --rescore), predict the held-out images with the last weights, score them."""
    if not args.rescore:
        shutil.rmtree(run, ignore_errors=True)
        start = time.perf_counter()
        train(images or data["images"], masks or data["masks"], run, val_names=data["val"], seed=args.seed, progress=False,
              **data["options"], **options, **budget(args))
        print(f"   trained {name} in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    loaded = load(run, "last")
    predictor = Predictor.create(loaded, PredictConfig(weights="last"))
    predictions, gt = run.parent / f"{run.name}-predictions", run.parent / f"{run.name}-gt"
    for path in list_images(data["images"]):
        if path.stem in data["val"]:
            write_image(predictions / f"{path.stem}_probs.tif", predictor.probabilities(read_image(path), path))
            mask = next(data["masks"].glob(f"{path.stem}.*"))
            gt.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mask, gt / mask.name)
    scores = evaluate(predictions, gt, masks=loaded.data, boundary_class=data["boundary_class"],
                      threshold_sweep=data["boundary_class"] is not None, warping=False, progress=False)
    rows = (run / "metrics.csv").read_text().splitlines()
    return {"parameters": sum(p.numel() for p in loaded.model.parameters()), "train_steps": int(rows[-1].split(",")[1]),
            "inference_s_per_512": inference_seconds(loaded.model), "stack": _plain(scores["stack"]), "mean": _plain(scores["mean"])}


def _plain(scores: dict) -> dict:
    return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)}


def inference_seconds(model: torch.nn.Module, repeats: int = 3) -> float:
    """Median eager seconds for one 512 x 512 image."""
    x = torch.rand(1, model.config.in_channels, 512, 512)
    times = []
    with torch.inference_mode():
        model.eval()(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


# ----------------------------------------------------------------- the two benchmarks


def scratch(args) -> dict:
    results = {}
    for dataset in args.datasets:
        data = DATASETS[dataset](args.data_root, args.out)
        for name in args.only:
            print(f"== {dataset} / {name}", flush=True)
            results[f"{dataset}/{name}"] = result = train_and_score(name, data, args.out / dataset / name, contender(name, args), args)
            print(f"   {headline(result)}", flush=True)
    return results


def speed(args) -> dict:
    """s per 512 x 512 image of each model, untrained (speed does not depend on the weights), 1 and 3 input channels."""
    from unetkit import create_model

    results = {}
    for name in args.only:
        for channels in (1, 3):
            options = {k: v for k, v in MODELS[name].items() if k != "encoder_weights"}
            model = create_model("default", in_channels=channels, n_classes=2, **options)
            results[f"{name}/{channels}"] = {"parameters": sum(p.numel() for p in model.parameters()),
                                             "inference_s_per_512": inference_seconds(model, repeats=5), "threads": torch.get_num_threads()}
            print(f"{name}, {channels} channel(s): {results[f'{name}/{channels}']['inference_s_per_512']:.3f} s per 512^2", flush=True)
    return results


def contender(name: str, args) -> dict:
    if name.endswith("-imagenet"):
        encoder = name.removesuffix("-imagenet")
        return {"encoder": encoder, "encoder_weights": str(args.weights_dir / f"{encoder}.safetensors")}
    return MODELS[name]


def transfer(args) -> dict:
    """Source run, then per count of labelled target images: --init from it, and scratch, same budget."""
    model = contender(args.model, args)
    source, target = pair_data(args.pair, args.data_root, args.out)
    base = args.out / f"transfer-{args.pair}-{args.model}"
    print(f"== source {args.pair.split('-')[0]}", flush=True)
    results = {"source": train_and_score("source", source, base / "source", model, args)}
    train_names = sorted(p.stem for p in list_images(target["images"]) if p.stem not in target["val"])
    for count in counts(args, len(train_names)):
        chosen = set(np.random.default_rng(args.seed).permutation(train_names)[:count].tolist()) | set(target["val"])
        images, masks = subset(target, chosen, base / f"data-{count}")
        for start, options in (("init", {**model, "init": str(base / "source"), "encoder_weights": None}), ("scratch", model)):
            print(f"== {count} labelled images, {start}", flush=True)
            options = {k: v for k, v in options.items() if v is not None}
            result = train_and_score(start, target, base / f"{start}-{count}", options, args, images, masks)
            results[f"{start}/{count}"] = {**result, "labelled_images": count}
            print(f"   {headline(result)}", flush=True)
    return results


def pair_data(pair: str, root: Path, out: Path) -> tuple[dict, dict]:
    """(source, target) data sets of a transfer pair; both one channel, as --init needs the same architecture."""
    if pair == "synthetic-isbi":
        folder = write_dataset(out / "data" / "synthetic", count=30)
        synthetic = dict(images=folder / "images", masks=folder / "labels", val=ISBI_HELD_OUT, options={}, boundary_class=0)
        return synthetic, isbi(root, out)
    return isbi(root, out), dsb(root, out, grey=True)


def counts(args, available: int) -> list[int]:
    """Labelled image counts: --counts as given, --fractions of the training images."""
    if args.counts:
        return [min(c, available) for c in args.counts]
    return sorted({max(1, round(f * available)) for f in args.fractions})


def subset(target: dict, names: set[str], folder: Path) -> tuple[Path, Path]:
    """Folders of symbolic links to the chosen images and masks (the held-out ones included)."""
    for kind in ("images", "masks"):
        shutil.rmtree(folder / kind, ignore_errors=True)
        (folder / kind).mkdir(parents=True)
        for path in target[kind].iterdir():
            if path.stem in names:
                (folder / kind / path.name).symlink_to(path.resolve())
    return folder / "images", folder / "masks"


def headline(result: dict) -> str:
    stack = result["stack"]
    shown = [f"{k} {stack[k]:.4f}" for k in ("mean_iou", "pixel_error", "rand_error") if k in stack]
    return f"{result['train_steps']} steps, " + ", ".join(shown) + f", {result['inference_s_per_512']:.3f} s per 512^2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=("scratch", "transfer", "speed"))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "accuracy_encoders")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data sets (default ../shared/data)")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget of each run")
    parser.add_argument("--steps", type=int, help="train each run this many steps instead (a quick check, or a recorded count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rescore", action="store_true", help="predict and score finished runs again, no training")
    parser.add_argument("--datasets", nargs="*", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--only", nargs="*", default=["default", "resnet18", "resnet34"],
                        help=f"models: {', '.join(MODELS)}, or NAME-imagenet with --weights-dir")
    parser.add_argument("--weights-dir", type=Path, help="folder of the hub's ImageNet weights as NAME.safetensors")
    parser.add_argument("--pair", default="synthetic-isbi", choices=("synthetic-isbi", "isbi-dsb"))
    parser.add_argument("--model", default="default", help="transfer: the model of source and target runs")
    parser.add_argument("--counts", nargs="*", type=int, help="transfer: labelled target images (default for synthetic-isbi: 1 3 10 25)")
    parser.add_argument("--fractions", nargs="*", type=float, default=[0.05, 0.1, 0.25, 1.0], help="transfer: shares of the target's training images")
    args = parser.parse_args()
    if args.benchmark == "transfer" and args.pair == "synthetic-isbi" and not args.counts:
        args.counts = [1, 3, 10, 25]
    results = {"scratch": scratch, "transfer": transfer, "speed": speed}[args.benchmark](args)
    save(f"accuracy_encoders-{args.benchmark}", {"minutes_each": None if args.steps else args.minutes, "steps_each": args.steps,
                                               "results": results, "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
