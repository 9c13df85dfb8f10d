"""Issue 6's accuracy benchmark: unetkit beside its peers on the ISBI 2012 protocol.

Every contender trains through the same `unetkit.train` (same patches,
augmentation, weight map, loss, optimiser, schedule) for the same CPU time
budget on sections 00-24, then predicts sections 25-29 with its *last*
weights (the held-out sections pick nothing) through the same overlap-tile
code; the ISBI metrics come from `unetkit.evaluate`. Peers: MONAI's
`BasicUNet` and `UNet` (pip install monai; segmentation_models_pytorch needs
torchvision, whose CPU build does not exist for this machine's torch).

    .venv/bin/pip install -r benchmarks/requirements.txt
    .venv/bin/python benchmarks/accuracy_isbi.py                  # 15 min each
    .venv/bin/python benchmarks/accuracy_isbi.py --minutes 0.3 --only unetkit-default   # a quick check
    .venv/bin/python benchmarks/accuracy_isbi.py --rescore --only monai-UNet    # predict + score a finished run again
    .venv/bin/python benchmarks/accuracy_isbi.py --no-cpu-bf16 --out runs/accuracy_isbi_fp32   # everyone in fp32
    .venv/bin/python benchmarks/accuracy_isbi.py --rescore --tta     # finished runs predicted with the paper's 8-pose averaging
    .venv/bin/python benchmarks/accuracy_isbi.py --steps 1900 --only unetkit-default   # a recorded run's steps, any load

After each contender it prints the scores of the 5 held-out sections as one
stack with one threshold per score (as the challenge scored its stack) and
then, named as such, the per-image means (each section at its own best
threshold, which flatters); the JSON keeps both ("stack", "mean") and the
stack's thresholds. `benchmarks/tables.py` turns the JSON into the tables
of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, save  # noqa: E402
from unetkit import ModelConfig, UNet, evaluate, train  # noqa: E402
from unetkit.checkpoint import load_weights, read_config  # noqa: E402
from unetkit.config import DataConfig, from_dict  # noqa: E402
from unetkit.data import mask_to_classes  # noqa: E402
from unetkit.data.weightmap import balancing_weights, class_frequencies  # noqa: E402
from unetkit.io import list_images, read_image, read_mask, write_image  # noqa: E402
from unetkit.prediction import PredictConfig, Predictor, torch_logits_fn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012" / "train"
HELD_OUT = ["25", "26", "27", "28", "29"]
KEYS = ("pixel_error", "pixel_error_fscore", "rand_error", "warping_error", "info_error", "mean_iou")
SWEPT = ("pixel_error_fscore", "rand_error", "warping_error", "info_error")  # scored at the best threshold of a sweep


class Peer(torch.nn.Module):
    """Another library's same-padding network behind UNet's size questions."""

    def __init__(self, net: torch.nn.Module, config: ModelConfig):
        super().__init__()
        self.net, self.config = net, config
        with torch.device("meta"):  # same padding, same depth: same size rules; kept out of the
            object.__setattr__(self, "_sizes", UNet(config))  # module tree so .to() leaves it alone
        self.margin = 0

    def forward(self, x):
        self._sizes.check_input_size(*x.shape[-2:])
        return self.net(x)

    def output_size(self, h, w):
        return self._sizes.output_size(h, w)

    def valid_input_size(self, h, w):
        return self._sizes.valid_input_size(h, w)

    def check_input_size(self, h, w):
        self._sizes.check_input_size(h, w)


def monai_basic_unet(config: ModelConfig) -> Peer:
    from monai.networks.nets import BasicUNet

    return Peer(BasicUNet(spatial_dims=2, in_channels=config.in_channels, out_channels=config.n_classes), config)


def monai_unet(config: ModelConfig) -> Peer:
    from monai.networks.nets import UNet as MonaiUNet

    net = MonaiUNet(spatial_dims=2, in_channels=config.in_channels, out_channels=config.n_classes,
                    channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)
    return Peer(net, config)


# name -> (preset whose sizes/training defaults apply, network builder, model overrides)
CONTENDERS = {
    "unetkit-default": ("default", UNet, {}),
    "monai-BasicUNet": ("default", monai_basic_unet, {}),
    "monai-UNet": ("default", monai_unet, {}),
    "unetkit-paper": ("paper", UNet, {}),
    "unetkit-default-w8": ("default", UNet, {"base_width": 8}),
    "unetkit-default-instance": ("default", UNet, {"norm": "instance"}),
    "unetkit-default-instance-residual": ("default", UNet, {"norm": "instance", "residual": True}),
    "unetkit-default-depth5": ("default", UNet, {"depth": 5}),
    "unetkit-default-w24": ("default", UNet, {"base_width": 24}),
    "unetkit-default-stem2": ("default", UNet, {"stem_stride": 2}),
    "unetkit-default-stem2-w24": ("default", UNet, {"stem_stride": 2, "base_width": 24}),
    "unetkit-default-stem2-residual": ("default", UNet, {"stem_stride": 2, "residual": True}),
    "unetkit-default-stem2-instance-residual": ("default", UNet, {"stem_stride": 2, "norm": "instance", "residual": True}),
}
DEFAULT_RUN = ["unetkit-default", "monai-BasicUNet", "monai-UNet"]


def run_contender(name: str, data: Path, out: Path, minutes: float, seed: int, rescore: bool = False,
                  cpu_bf16: bool | None = None, tta: bool = False, steps: int | None = None) -> dict:
    preset, build, overrides = CONTENDERS[name]
    run = out / name
    if not rescore:
        if run.exists():
            shutil.rmtree(run)
        # A step count instead of the clock repeats a recorded run's learning on a busy machine.
        budget = {"steps": steps} if steps else {"time_budget": minutes}
        train(data / "images", data / "labels", run, preset=preset, **budget, val_names=tuple(HELD_OUT),
              seed=seed, build_model=build, cpu_bf16=cpu_bf16, **overrides)
    model, predictor = load_predictor(name, run, data / "labels", PredictConfig(tta=tta))
    predictions = out / f"{name}-predictions{'-tta' if tta else ''}"
    for path in list_images(data / "images"):
        if path.stem in HELD_OUT:
            probs = predictor.probabilities(read_image(path), path)
            write_image(predictions / f"{path.stem}_probs.tif", probs)
    scores = evaluate(predictions, out / "gt", boundary_class=0, threshold_sweep=True, progress=False)
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_steps": int(rows[-1]["step"]),
        "train_samples_per_s": float(rows[-1]["samples_per_s"]),
        "inference_s_per_512": inference_seconds(model),
        "mean": {k: scores["mean"][k] for k in KEYS},
        "stack": {k: scores["stack"].get(k) for k in KEYS},
        "stack_thresholds": {k: scores["stack"].get(f"{k}_threshold") for k in SWEPT},
        "curves": str(run / "curves.png"),
    }


def load_predictor(name: str, run: Path, labels: Path, config: PredictConfig = PredictConfig()):
    """(model, Predictor) of a finished run's last weights, as every contender is scored."""
    _, build, _ = CONTENDERS[name]
    run_config = read_config(run)
    model = build(from_dict(ModelConfig, run_config["model"]))
    load_weights(model, run / "model.safetensors")
    model.eval()
    data_config = with_class_weights(from_dict(DataConfig, run_config["data"]), labels, run_config["split"]["train"])
    return model, Predictor(model.config, data_config, torch_logits_fn(model), config)


def with_class_weights(data_config: DataConfig, labels: Path, names: list[str]) -> DataConfig:
    """A run trained before runs stored their class weights gets them as training computes them ("auto")."""
    if data_config.class_weights is not None:
        return data_config
    masks = [mask_to_classes(read_mask(labels / f"{name}.png"), data_config) for name in names]
    weights = balancing_weights(class_frequencies(masks, data_config.n_classes, data_config.ignore_index))
    return dataclasses.replace(data_config, class_weights=tuple(map(float, weights)))


def inference_seconds(model: torch.nn.Module, repeats: int = 3) -> float:
    """Median plain-eager seconds for one 512 x 512 grey image (valid padding: its padded input)."""
    size = model.valid_input_size(512 + 2 * model.margin, 512 + 2 * model.margin)
    x = torch.rand(1, model.config.in_channels, *size)
    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ISBI)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "accuracy_isbi")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--only", nargs="*", choices=list(CONTENDERS), default=DEFAULT_RUN)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="train each contender for this many steps instead of --minutes "
                        "(e.g. a recorded run's step count, to repeat it on a machine that is not quiet)")
    parser.add_argument("--rescore", action="store_true", help="predict and score the runs already in --out, no training")
    parser.add_argument("--cpu-bf16", action=argparse.BooleanOptionalAction,
                        help="bf16 autocast for every contender (default: unetkit's, on where the CPU has AVX512-BF16/AMX)")
    parser.add_argument("--tta", action="store_true", help="predict every contender as the paper did: the mean over 8 flips/rotations")
    args = parser.parse_args()

    (args.out / "gt").mkdir(parents=True, exist_ok=True)
    for name in HELD_OUT:
        shutil.copyfile(args.data / "labels" / f"{name}.png", args.out / "gt" / f"{name}.png")
    baseline = membrane_share(args.out / "gt")
    print(f"all-cell baseline pixel error on {', '.join(HELD_OUT)}: {baseline:.4f}")
    results = {}
    for name in args.only:
        length = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"
        print(f"== {name}: " + ("rescored" if args.rescore else length), flush=True)
        results[name] = run_contender(name, args.data, args.out, args.minutes, args.seed, args.rescore, args.cpu_bf16, args.tta,
                                       args.steps)
        tag = {True: "-bf16", False: "-fp32", None: ""}[args.cpu_bf16]
        shutil.copyfile(results[name]["curves"], RESULTS / f"accuracy_isbi-{name}{tag}-curves.png")
        print_table(results)
    save("accuracy_isbi", {"minutes_each": None if args.steps else args.minutes, "steps_each": args.steps, "held_out": HELD_OUT, "all_cell_pixel_error": baseline,
                           "rescored": args.rescore, "cpu_bf16": args.cpu_bf16, "tta": args.tta, "results": results, "command": " ".join(sys.argv)})


def membrane_share(gt: Path) -> float:
    """Pixel error of calling every held-out pixel cell interior (the floor any model must beat)."""
    return float(np.mean([np.mean(read_mask(path) == 0) for path in sorted(gt.glob("*.png"))]))


# The challenge scored its stack with one threshold; the per-image mean lets each image pick its own and flatters.
PARTS = (("stack", "stack, one threshold (the held-out sections pooled, as the challenge scored its stack)"),
         ("mean", "per-image mean, own best thresholds (each section at its best threshold, then averaged)"))


def print_table(results: dict) -> None:
    """The stack figures first, then the per-image means, each named."""
    for part, title in PARTS:
        print(f"-- {title}")
        print(f"{'model':<18} {'params':>10} {'steps':>6} " + " ".join(f"{k:>14}" for k in KEYS) + f" {'s/512^2':>8}")
        for name, r in results.items():
            values = " ".join(f"{'n/a' if r[part][k] is None else format(r[part][k], '.4f'):>14}" for k in KEYS)
            print(f"{name:<18} {r['parameters']:>10,} {r['train_steps']:>6} {values} {r['inference_s_per_512']:>8.3f}")


if __name__ == "__main__":
    main()
