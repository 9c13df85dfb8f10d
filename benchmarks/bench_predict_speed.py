"""CPU prediction speed and memory: our presets and the peers, plain eager PyTorch against the faster CPU paths.

    .venv/bin/python benchmarks/bench_predict_speed.py                 # full figures (about 2 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_predict_speed.py --presets tiny --peers --repeats 1 --no-save   # a quick check

One 512 x 512 grey image through `Predictor.probabilities` (normalisation,
mirror padding, tiling, softmax: what `unetkit predict` does per image), for
the `paper` preset (one 700 x 700 valid-padding tile -> 516 x 516 logits), the
`default` preset, the `fast` preset (its strided stem) and the peers of
`accuracy_isbi.py` (MONAI's BasicUNet and UNet, untrained: speed does not
depend on the weights; skipped without monai), with:
- eager: plain eager PyTorch (the torch backend as is);
- channels_last: the torch backend with NHWC tensors (`--channels-last`);
- onnxruntime: the exported ONNX model, all graph optimisations (`--backend onnxruntime`);
- torchscript_frozen: traced, frozen and `optimize_for_inference` (oneDNN fused convs).
Paths run round-robin, `--repeats` times each after a warm-up, so a load
change on a shared machine hits all of them alike; the median is reported.
Peak memory: each model predicts the image once, eager, in a fresh process;
reported is the peak resident memory and its rise over the process with the
model loaded.
Target: the best path at least 1.5x faster than eager for the paper preset.
Saves dated JSON with machine info under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import unetkit
from unetkit.config import DataConfig
from unetkit.prediction import PredictConfig, Predictor, torch_logits_fn
from unetkit.prediction.export import export_model, onnx_logits_fn

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


CONFIG = PredictConfig(memory_mb=2048)  # room for one whole-image tile: every path does the same work


def build(name: str):
    """Our preset `name`, or the contender of that name in accuracy_isbi.py; eval mode, seeded weights."""
    torch.manual_seed(0)
    if name in unetkit.PRESETS:
        return unetkit.create_model(name).eval()
    from accuracy_isbi import CONTENDERS

    preset, build_contender, overrides = CONTENDERS[name]
    return build_contender(unetkit.preset_config(preset, **overrides)).eval()


def test_image(size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)


def bench_model(model_name: str, size: int, repeats: int, tmp: Path) -> dict:
    model = build(model_name)
    image = test_image(size)
    tile = Predictor(model.config, DataConfig(), torch_logits_fn(model), CONFIG).grid(size, size).tile_shape[0]
    predictors = {name: Predictor(model.config, DataConfig(), fn, CONFIG) for name, fn in paths_for(model, tile, tmp).items()}
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
        "model": model_name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "image": [size, size],
        "tiles": grid.count,
        "tile_input": list(grid.tile_shape),
        "seconds_median": median,
        "seconds_all": times,
        "images_per_second": {n: 1 / s for n, s in median.items()},
        "max_prob_difference_vs_eager": max_diff,
        "best_path": best,
        "best_speedup_vs_eager": median["eager"] / median[best],
        **peak_memory(model_name, size),
    }


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: the peak


def memory_child(name: str, size: int) -> None:
    """In a fresh process: the peak resident memory of one eager prediction (printed as JSON)."""
    model = build(name)
    predictor = Predictor(model.config, DataConfig(), torch_logits_fn(model), CONFIG)
    image = test_image(size)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak to now: the import's peaks do not count
    loaded = rss_mb("VmRSS")
    predictor.probabilities(image)
    peak = rss_mb("VmHWM")
    print(json.dumps({"peak_rss_mb": peak, "prediction_rise_mb": peak - loaded}))


def peak_memory(name: str, size: int) -> dict:
    command = [sys.executable, __file__, "--memory-child", name, "--size", str(size)]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=["paper", "default", "fast"])
    parser.add_argument("--peers", nargs="*", default=["monai-BasicUNet", "monai-UNet"], help="none: ours only")
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path (median reported)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--memory-child", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args.size)

    import tempfile

    models = list(args.presets)
    try:
        import monai  # noqa: F401

        models += args.peers
    except ImportError:
        print("monai is not installed: the peers are skipped (pip install -r benchmarks/requirements.txt)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            result = bench_model(name, args.size, args.repeats, Path(tmp))
            results.append(result)
            print(f"\n{name}: {args.size} x {args.size}, {result['tiles']} tile(s) of {result['tile_input']}, "
                  f"peak memory {result['peak_rss_mb']:.0f} MB (+{result['prediction_rise_mb']:.0f} MB predicting)")
            print(f"{'path':20} {'s/image':>9} {'images/s':>9} {'speedup':>8} {'max |dp|':>9}")
            for path, seconds in result["seconds_median"].items():
                speedup = result["seconds_median"]["eager"] / seconds
                print(f"{path:20} {seconds:9.3f} {1 / seconds:9.3f} {speedup:7.2f}x {result['max_prob_difference_vs_eager'][path]:9.1e}")
            target = f"; target >= {TARGET_SPEEDUP}x" if name == "paper" else ""
            print(f"best other path: {result['best_path']} ({result['best_speedup_vs_eager']:.2f}x eager{target})")
    if not args.no_save:
        save("predict_speed", {"repeats": args.repeats, "target_speedup_paper": TARGET_SPEEDUP, "results": results})


if __name__ == "__main__":
    main()
