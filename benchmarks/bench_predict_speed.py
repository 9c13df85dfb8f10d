"""CPU prediction speed: plain eager PyTorch against the faster CPU paths, side by side.

    .venv/bin/python benchmarks/bench_predict_speed.py                 # full figures (about 5 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_predict_speed.py --presets tiny --repeats 1 --no-save   # a quick check

One 512 x 512 grey image through `Predictor.probabilities` (normalisation,
mirror padding, tiling, softmax: what `unetkit predict` does per image), for
the `paper` preset (one 700 x 700 valid-padding tile -> 516 x 516 logits), the
`default` preset and the `fast` preset (its strided stem), with:
- eager: plain eager PyTorch (the torch backend as is);
- channels_last: the torch backend with NHWC tensors (`--channels-last`);
- onnxruntime: the exported ONNX model, all graph optimisations (`--backend onnxruntime`);
- torchscript_frozen: traced, frozen and `optimize_for_inference` (oneDNN fused convs).
Paths run round-robin, `--repeats` times each after a warm-up, so a load
change on a shared machine hits all of them alike; the median is reported.
Target: the best path at least 1.5x faster than eager for the paper preset.
Saves dated JSON with machine info under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import sys
import copy
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import unetkit
from unetkit.config import DataConfig
from unetkit.export import export_model, onnx_logits_fn
from unetkit.predict import Predictor, PredictConfig, torch_logits_fn
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 1.5


def frozen_torchscript_logits_fn(model, example: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(copy.deepcopy(model), example)))

    def logits(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(batch)).numpy()

    return logits


def paths_for(model, tile: int, tmp: Path) -> dict:
    """name -> logits function, each a way to run the same model on the CPU."""
    example = torch.rand(1, model.config.in_channels, tile, tile)
    onnx_path = export_model(model, tmp / f"{id(model)}.onnx").path
    return {
        "eager": torch_logits_fn(model),
        "channels_last": torch_logits_fn(model, channels_last=True),
        "onnxruntime": onnx_logits_fn(onnx_path),
        "torchscript_frozen": frozen_torchscript_logits_fn(model, example),
    }


def bench_preset(preset: str, size: int, repeats: int, tmp: Path) -> dict:
    torch.manual_seed(0)
    model = unetkit.create_model(preset).eval()
    image = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    config = PredictConfig(memory_mb=2048)  # room for one whole-image tile: every path does the same work
    tile = Predictor(model.config, DataConfig(), torch_logits_fn(model), config).grid(size, size).tile_shape[0]
    predictors = {name: Predictor(model.config, DataConfig(), fn, config) for name, fn in paths_for(model, tile, tmp).items()}
    reference = predictors["eager"].probabilities(image)
    times: dict[str, list[float]] = {name: [] for name in predictors}
    max_diff = {}
    for name, predictor in predictors.items():  # warm-up, and every path must agree with eager
        max_diff[name] = float(np.abs(predictor.probabilities(image) - reference).max())
    for _ in range(repeats):
        for name, predictor in predictors.items():
            start = time.perf_counter()
            predictor.probabilities(image)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    best = min((n for n in median if n != "eager"), key=median.get)
    grid = predictors["eager"].grid(size, size)
    return {
        "preset": preset,
        "image": [size, size],
        "tiles": grid.count,
        "tile_input": list(grid.tile_shape),
        "seconds_median": median,
        "seconds_all": times,
        "images_per_second": {n: 1 / s for n, s in median.items()},
        "max_prob_difference_vs_eager": max_diff,
        "best_path": best,
        "best_speedup_vs_eager": median["eager"] / median[best],
    }




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["paper", "default", "fast"])
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path (median reported)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            result = bench_preset(preset, args.size, args.repeats, Path(tmp))
            results.append(result)
            print(f"\n{preset}: {args.size} x {args.size}, {result['tiles']} tile(s) of {result['tile_input']}")
            print(f"{'path':20} {'s/image':>9} {'images/s':>9} {'speedup':>8} {'max |dp|':>9}")
            for name, seconds in result["seconds_median"].items():
                speedup = result["seconds_median"]["eager"] / seconds
                print(f"{name:20} {seconds:9.3f} {1 / seconds:9.3f} {speedup:7.2f}x {result['max_prob_difference_vs_eager'][name]:9.1e}")
            print(f"best: {result['best_path']} ({result['best_speedup_vs_eager']:.2f}x eager; target >= {TARGET_SPEEDUP}x for paper)")
    if not args.no_save:
        save("predict_speed", {"repeats": args.repeats, "target_speedup_paper": TARGET_SPEEDUP, "results": results})


if __name__ == "__main__":
    main()
