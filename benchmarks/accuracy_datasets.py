"""Issue 13's benchmark: unetkit with no flags beyond the folders beside MONAI's networks in a plain loop, per data set.

Each data set is split once into training files and held-out test files
(ISBI: sections 25-29; DSB 2018: a seeded 20% of the ids; Dubai aerial: tile
8, whole; Amazon: its own val/ folder); the folders are symbolic links to
../shared/data, nothing is copied. Then, for the same CPU time each:

- `unetkit`: `unetkit.train(images, masks, run, time_budget=M)`: the plan
  from the data chooses everything; `predict_files` then writes what a user
  gets (labels, probabilities, instances for instance maps).
- `monai-UNet`, `monai-BasicUNet`: the loop their users write: images scaled
  to 0..1 per image (MONAI's ScaleIntensity), random 256 px crops (padded
  where smaller), random flips, Adam 1e-3, cross-entropy, batch 4, fp32 (no
  autocast: the tutorials' CPU setting); prediction with MONAI's
  `sliding_window_inference` (256 px windows, 25% overlap, Gaussian blend).
  Their class ids are read from the masks exactly as unetkit's run read them
  (its stored mask convention), so every contender is scored on the same
  ground truth.

Scores (`unetkit.evaluate` on the test files, pooled over the set): DSB: AP
at IoU 0.5:0.95 of the instances (the peers': connected components, as their
users get them) and mean IoU; Dubai: mean IoU over the 5 land-cover classes
(the unlabeled colours excluded); Amazon: IoU of non-forest; ISBI: pixel,
Rand and warping errors (the challenge's threshold sweep).

    .venv/bin/pip install -r benchmarks/requirements.txt          # monai
    .venv/bin/python benchmarks/accuracy_datasets.py               # 4 data sets x 3 x 15 min
    .venv/bin/python benchmarks/accuracy_datasets.py --datasets dsb2018 --minutes 0.2   # a check
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402
from unetkit import evaluate, train  # noqa: E402
from unetkit.checkpoint import read_config, read_data_config  # noqa: E402
from unetkit.data import mask_to_classes, pair_files, read_pair  # noqa: E402
from unetkit.io import list_images, read_image, write_image  # noqa: E402
from unetkit.prediction import predict_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DUBAI_CLASSES = ((60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41))  # the unlabeled colours left out
CONTENDERS = ("unetkit", "monai-UNet", "monai-BasicUNet")


# ----------------------------------------------------------------- the splits: name -> (train stems, test stems) over one folder pair


def folders(name: str) -> list[tuple[Path, Path, set[str] | None]]:
    """(images, masks, test stems or None for "all of it is test") of a data set's folders."""
    if name == "isbi2012":
        return [(SHARED / name / "train" / "images", SHARED / name / "train" / "labels", {"25", "26", "27", "28", "29"})]
    if name == "dsb2018":
        stems = sorted(p.stem for p in (SHARED / name / "images").glob("*.png"))
        test = set(np.random.default_rng(0).choice(stems, size=len(stems) // 5, replace=False).tolist())
        return [(SHARED / name / "images", SHARED / name / "labels", test)]
    if name == "dubai_aerial":
        test = {p.stem for p in (SHARED / name / "images").glob("tile8_*")}
        return [(SHARED / name / "images", SHARED / name / "masks", test)]
    return [(SHARED / name / "train" / "images", SHARED / name / "train" / "masks", set()),
            (SHARED / name / "val" / "images", SHARED / name / "val" / "masks", None)]


def split(name: str, out: Path) -> dict:
    """train/ and test/ folders of symbolic links (images, masks), made anew."""
    base = out / "data" / name
    shutil.rmtree(base, ignore_errors=True)
    for images, masks, test in folders(name):
        for kind, folder in (("images", images), ("masks", masks)):
            for path in sorted(folder.iterdir()):
                part = "test" if test is None or path.stem in test else "train"
                (base / part / kind).mkdir(parents=True, exist_ok=True)
                (base / part / kind / path.name).symlink_to(path)
    return split_folders(name, out)


def split_folders(name: str, out: Path) -> dict:
    """The (images, masks) folders of the train and test parts `split` made under `out`."""
    base = out / "data" / name
    return {part: (base / part / "images", base / part / "masks") for part in ("train", "test")}


def unetkit_run_dir(out: Path, dataset: str, options: dict | str) -> Path:
    """The unetkit run's folder: `unetkit`, or `unetkit-K=V-...` for a variant (options as a dict or that suffix)."""
    suffix = options if isinstance(options, str) else "-".join(f"{k}={v}" for k, v in options.items())
    return out / dataset / ("unetkit" + (f"-{suffix}" if suffix else ""))


def run_facts(run: Path) -> dict:
    """The steps a finished unetkit run trained and the plan it ran."""
    steps = int((run / "metrics.csv").read_text().splitlines()[-1].split(",")[1])
    return {"steps": steps, "plan": {c["option"]: c["value"] for c in read_config(run)["plan"]["choices"]}}


# ----------------------------------------------------------------- unetkit: the folders, nothing else


def run_unetkit(data: dict, run: Path, minutes: float, seed: int, options: dict) -> Path:
    shutil.rmtree(run, ignore_errors=True)
    train(*data["train"], run, time_budget=minutes, seed=seed, progress=False, **options)
    predictions = run.parent / f"{run.name}-predictions"
    shutil.rmtree(predictions, ignore_errors=True)
    predict_files(run, [data["test"][0]], predictions)
    return predictions


# ----------------------------------------------------------------- MONAI: the plain loop


def monai_net(name: str, in_channels: int, n_classes: int) -> torch.nn.Module:
    from monai.networks.nets import BasicUNet, UNet

    if name == "monai-BasicUNet":
        return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=n_classes)
    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=n_classes, channels=(16, 32, 64, 128, 256),
                strides=(2, 2, 2, 2), num_res_units=2)


def scaled(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float32 in 0..1 per image: MONAI's ScaleIntensity."""
    image = image.astype(np.float32)
    low, high = image.min(), image.max()
    return (image - low) / max(high - low, 1e-8)


def random_batch(images, labels, rng, patch: int, batch: int, ignore: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i in rng.integers(len(images), size=batch):
        x, y = images[i], labels[i]
        pad_h, pad_w = max(0, patch - x.shape[1]), max(0, patch - x.shape[2])
        x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w)))
        y = np.pad(y, ((0, pad_h), (0, pad_w)), constant_values=ignore)
        top, left = rng.integers(x.shape[1] - patch + 1), rng.integers(x.shape[2] - patch + 1)
        x, y = x[:, top:top + patch, left:left + patch], y[top:top + patch, left:left + patch]
        for axis in (0, 1):
            if rng.random() < 0.5:
                x, y = np.flip(x, axis + 1), np.flip(y, axis)
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def run_monai(name: str, data: dict, unetkit_run: Path, run: Path, minutes: float, seed: int) -> tuple[Path, int]:
    """Train for `minutes`, predict the test images; (predictions folder, steps)."""
    from monai.inferers import sliding_window_inference

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    convention = read_data_config(unetkit_run)
    read = [read_pair(pair, convention)[:2] for pair in pair_files(*data["train"])]  # as unetkit reads them (off-size masks cropped)
    images, labels = [scaled(image) for image, _ in read], [classes.astype(np.int64) for _, classes in read]  # int64: padded with -100
    ignore = -100 if convention.ignore_index is None else convention.ignore_index
    net = monai_net(name, images[0].shape[0], convention.n_classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=ignore)
    steps, end = 0, time.monotonic() + 60 * minutes
    net.train()
    while time.monotonic() < end:
        x, y = random_batch(images, labels, rng, 256, 4, ignore)
        optimizer.zero_grad()
        loss_fn(net(x), y.long()).backward()
        optimizer.step()
        steps += 1
    net.eval()
    predictions = run.parent / f"{run.name}-predictions"
    shutil.rmtree(predictions, ignore_errors=True)
    with torch.inference_mode():
        for path in list_images(data["test"][0]):
            x = torch.from_numpy(scaled(read_image(path)))[None]
            logits = sliding_window_inference(x, (256, 256), 4, net, overlap=0.25, mode="gaussian")
            probs = torch.softmax(logits, 1)[0].numpy()
            write_image(predictions / f"{path.stem}_probs.tif", probs.astype(np.float32))
            write_image(predictions / f"{path.stem}_labels.png", probs.argmax(0).astype(np.uint8), compress=True)
    return predictions, steps


# ----------------------------------------------------------------- scores


def score(dataset: str, predictions: Path, data: dict, unetkit_run: Path) -> dict:
    convention = read_data_config(unetkit_run)
    boundary = 0 if dataset in ("isbi2012", "dsb2018") else None
    results = evaluate(predictions, data["test"][1], masks=convention, boundary_class=boundary,
                       threshold_sweep=dataset == "isbi2012", warping=dataset == "isbi2012", progress=False)
    stack = results["stack"]
    iou = np.asarray(stack["iou_per_class"], dtype=float)
    if dataset == "isbi2012":
        return {k: stack[k] for k in ("pixel_error", "rand_error", "warping_error", "mean_iou")}
    if dataset == "dsb2018":
        return {"ap": stack["ap"], "ap_50": stack["ap_50"], "mean_iou": stack["mean_iou"]}
    if dataset == "dubai_aerial":
        named = [convention.colours.index(c) for c in DUBAI_CLASSES]
        return {"mean_iou_5_classes": float(np.mean(iou[named])), "mean_iou_all": stack["mean_iou"]}
    non_forest = int(mask_to_classes(np.array([[1, 2]], np.uint8), convention)[0, 1])
    return {"iou_non_forest": float(iou[non_forest]), "mean_iou": stack["mean_iou"]}


def run_dataset(dataset: str, args) -> dict:
    data = split(dataset, args.out)
    base = args.out / dataset
    unetkit_run = unetkit_run_dir(args.out, dataset, args.set)  # a variant's run beside the plan's
    results = {}
    for name in args.only:
        print(f"== {dataset} / {name}: {args.minutes:g} min", flush=True)
        start = time.perf_counter()
        if name == "unetkit":
            predictions = run_unetkit(data, unetkit_run, args.minutes, args.seed, args.set)
            facts = run_facts(unetkit_run)
            steps, extra = facts["steps"], {"plan": facts["plan"]}
        else:
            predictions, steps = run_monai(name, data, unetkit_run, base / name, args.minutes, args.seed)
            extra = {}
        results[name] = {"steps": steps, "wall_min": (time.perf_counter() - start) / 60, **score(dataset, predictions, data, unetkit_run), **extra}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in results[name].items() if isinstance(v, float))
        print(f"   {steps} steps, {shown}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=["dsb2018", "dubai_aerial", "amazon_forest", "isbi2012"],
                        choices=["dsb2018", "dubai_aerial", "amazon_forest", "isbi2012"])
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=list(CONTENDERS),
                        help="contenders (the MONAI ones read the mask convention of the unetkit run, so it comes first)")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "accuracy_datasets")
    parser.add_argument("--set", nargs="*", default=[], metavar="OPTION=VALUE",
                        help="a unetkit variant: training options over the plan's (e.g. class_weights=none val_fraction=0)")
    args = parser.parse_args()
    args.set = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    results = {}
    for dataset in args.datasets:
        results[dataset] = run_dataset(dataset, args)
        save("accuracy_datasets", {"minutes_each": args.minutes, "seed": args.seed, "unetkit_options": args.set,
                                   "results": results, "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
