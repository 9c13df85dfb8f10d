import csv
import hashlib
import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import unetkit
from _train_data import TINY, make_dataset
from unetkit.checkpoint import load_train_state
from unetkit.config import RunConfig, TrainConfig
from unetkit.training.context import Loop
from unetkit.training.step import learning_rate
from unetkit.training.stopping import Stopper


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "data", n=4, size=48)


def read_metrics(run):
    with open(run / "metrics.csv") as file:
        return list(csv.DictReader(file))


def weights(run):
    return load_file(run / "model.safetensors")


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def run_script(code: str, *args, timeout=120):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


RESUMABLE = dict(steps=12, save_every=4, deterministic=True, dropout=0.2, **TINY)  # dropout: the torch RNG matters


def test_run_folder_contents_and_learning(data, tmp_path):
    run = unetkit.train(*data, tmp_path / "run", steps=12, **TINY)
    for name in ("model.safetensors", "best.safetensors", "config.json", "train_state.pt", "metrics.csv", "curves.png"):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*.tmp")), "a temporary file was left behind"
    config = json.loads((run / "config.json").read_text())
    assert config["run"]["steps"] == 12 and config["split"] == {"train": ["00", "01", "02"], "val": ["03"]}
    background, discs = config["data"]["class_weights"]  # "auto", resolved: prediction divides them out
    assert discs > 1 > background
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == [6, 12]  # one row per epoch of 6 steps
    assert 0 <= float(rows[-1]["val_pixel_error"]) <= 1
    assert unetkit.load(run).model.config.depth == 3  # the run folder loads for prediction


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run_bitwise(data, tmp_path):
    straight = unetkit.train(*data, tmp_path / "straight", **RESUMABLE)
    killed = tmp_path / "killed"
    code = """
        import json, os, signal, sys
        import unetkit
        kill = lambda loop: loop.step == 10 and os.kill(os.getpid(), signal.SIGKILL)
        unetkit.train(sys.argv[1], sys.argv[2], sys.argv[3], hooks={"on_step_end": kill}, **json.loads(sys.argv[4]))
    """
    result = run_script(code, *data, killed, json.dumps(RESUMABLE))
    assert result.returncode == -9, result.stderr[-2000:]
    assert load_train_state(killed)["loop"]["step"] == 8  # last checkpoint: save_every 4, mid-epoch 2
    unetkit.train(*data, killed, resume=True, progress=False)
    assert load_train_state(killed)["loop"]["step"] == 12
    assert_same_weights(weights(killed), weights(straight))
    assert_same_weights(load_file(killed / "best.safetensors"), load_file(straight / "best.safetensors"))


def test_sigterm_stops_cleanly_and_saves(data, tmp_path):
    run = tmp_path / "run"
    code = """
        import os, signal, sys
        import unetkit
        term = lambda loop: loop.step == 3 and os.kill(os.getpid(), signal.SIGTERM)
        unetkit.train(sys.argv[1], sys.argv[2], sys.argv[3], hooks={"on_step_end": term},
                      preset="tiny", batch_size=2, patch_size=32, steps=100, progress=False)
    """
    result = run_script(code, *data, run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_train_state(run)["loop"]["step"] == 3
    assert (run / "model.safetensors").exists() and (run / "metrics.csv").read_text().count("\n") == 2


def test_time_budget_stops_and_saves(data, tmp_path):
    run = unetkit.train(*data, tmp_path / "run", time_budget=0.03, **TINY)  # 1.8 s
    loop = load_train_state(run)["loop"]
    assert loop["total_steps"] is None and loop["step"] > 0 and loop["elapsed"] >= 0.9  # at least half: room kept for validation
    assert json.loads((run / "config.json").read_text())["run"]["time_budget"] == 0.03


def test_the_time_budget_keeps_room_for_the_last_validation():
    stopper = Stopper(SimpleNamespace(run=RunConfig(time_budget=10), config=TrainConfig()), Loop())
    assert stopper.training_budget(Loop()) == 600
    assert stopper.training_budget(Loop(history=[{"val_s": 20.0}, {"step": 5}, {"val_s": 40.0}])) == 570  # their mean
    assert stopper.training_budget(Loop(history=[{"val_s": 500.0}])) == 300  # never under half the budget


def test_resume_may_extend_but_not_change_the_recipe(data, tmp_path):
    run = unetkit.train(*data, tmp_path / "run", steps=6, **TINY)
    unetkit.train(*data, run, resume=True, steps=9, progress=False)
    assert load_train_state(run)["loop"]["step"] == 9
    with pytest.raises(unetkit.UserError, match="lr differ"):
        unetkit.train(*data, run, resume=True, lr=0.5, progress=False)
    with pytest.raises(unetkit.UserError, match="already holds a run.*--resume"):
        unetkit.train(*data, run, steps=3, **TINY)


def test_losses_and_options_combine(data, tmp_path):
    run = unetkit.train(*data, tmp_path / "run", steps=2, loss="ce+dice", weight_map=False, class_weights="1,3",
                        optimizer="sgd", schedule="poly", augment=False, val_names=("00", "02"), **TINY)
    config = json.loads((run / "config.json").read_text())
    assert config["split"]["val"] == ["00", "02"] and config["train"]["lr"] == 1e-2
    assert config["train"]["augment"]["enabled"] is False


def test_valid_padding_crops_the_target_and_validates_whole_images(data, tmp_path):
    run = unetkit.train(*data, tmp_path / "run", preset="paper", base_width=4, depth=2, dropout=0.0, steps=2,
                        batch_size=2, progress=False)
    config = json.loads((run / "config.json").read_text())
    margin = unetkit.create_model("paper", base_width=4, depth=2).margin
    assert config["model"]["padding"] == "valid" and config["train"]["patch_size"] == 48 + 2 * margin  # output = image
    assert float(read_metrics(run)[-1]["val_pixel_error"]) <= 1


def test_strided_stem_trains_and_predicts_any_size(data, tmp_path):
    run = unetkit.train(*data, tmp_path / "run", steps=2, stem_stride=2, **TINY)  # tiny: sizes in steps of 16
    assert json.loads((run / "config.json").read_text())["model"]["stem_stride"] == 2
    assert unetkit.load(run).model.config.total_stride == 16
    probs = unetkit.predict(run, torch.rand(37, 50).numpy())
    assert probs.shape == (2, 37, 50)


def test_cpu_bf16_autocasts_the_forward_or_refuses_clearly(data, tmp_path, monkeypatch):
    import unetkit.devices as devices

    dtypes = set()

    def build(config):
        net = unetkit.UNet(config)
        net.head.register_forward_hook(lambda module, inputs, out: dtypes.add(out.dtype))
        return net

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)  # emulated where the CPU lacks it: slow, still right
    run = unetkit.train(*data, tmp_path / "run", steps=2, cpu_bf16=True, build_model=build, **TINY)
    assert torch.bfloat16 in dtypes and json.loads((run / "config.json").read_text())["run"]["cpu_bf16"] is True
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(unetkit.UserError, match="no native bf16"):
        unetkit.train(*data, tmp_path / "other", steps=2, cpu_bf16=True, **TINY)


def test_sync_bn_on_cpu_is_a_clear_error(data, tmp_path):
    with pytest.raises(unetkit.UserError, match="--sync-bn needs CUDA"):
        unetkit.train(*data, tmp_path / "run", steps=1, sync_bn=True, device="cpu", **TINY)


def test_learning_rate_schedules():
    config = TrainConfig(lr=1.0, warmup_steps=4)
    assert learning_rate(config, 0, 0.0) == pytest.approx(0.2)  # warming up
    assert learning_rate(config, 10, 0.0) == 1.0
    assert learning_rate(config, 10, 0.5) == pytest.approx(0.5)
    assert learning_rate(config, 10, 1.0) == pytest.approx(0.0)
    poly = TrainConfig(lr=1.0, warmup_steps=0, schedule="poly")
    assert learning_rate(poly, 10, 0.5) == pytest.approx(0.5**0.9)


def test_ddp_two_cpu_processes_end_identical_and_write_once(data, tmp_path):
    run = tmp_path / "run"
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent("""
        import hashlib, os, sys
        import torch
        import unetkit

        def digest(model, loop):
            state = model.state_dict()
            blob = b"".join(state[k].numpy().tobytes() for k in sorted(state))
            rank = os.environ["RANK"]
            open(os.path.join(sys.argv[4], f"rank{rank}.sha"), "w").write(hashlib.sha256(blob).hexdigest())

        torch.manual_seed(int(os.environ["RANK"]))  # must not matter: DDP broadcasts rank 0's weights
        unetkit.train(sys.argv[1], sys.argv[2], sys.argv[3], hooks={"on_train_end": digest},
                      preset="tiny", batch_size=4, patch_size=32, steps=6, progress=False)
    """))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(script), *map(str, data), str(run), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    hashes = {(tmp_path / f"rank{r}.sha").read_text() for r in (0, 1)}
    assert len(hashes) == 1, "the two processes ended with different weights"
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == [3, 6]  # one row per epoch, not one per process
    assert not list(run.glob(".*.tmp"))
    saved = weights(run)
    blob = b"".join(saved[k].numpy().tobytes() for k in sorted(saved))
    assert hashlib.sha256(blob).hexdigest() in hashes


def test_bn_calibration_averages_the_batch_statistics_of_clean_grid_patches():
    from types import SimpleNamespace

    import numpy as np

    from unetkit.data import Example, PatchDataset, grid_windows
    from unetkit.training.validate import calibrate_batch_norm

    rng = np.random.default_rng(0)
    examples = [Example(str(i), rng.random((1, 40, 40), np.float32), np.zeros((40, 40), np.uint8)) for i in range(3)]
    windows = grid_windows([e.shape for e in examples], 16, 5)
    assert len(windows) == 5 and windows[0] == (0, 0, 0) and windows[-1] == (2, 16, 16)  # spread over all 12
    torch.manual_seed(0)
    net = unetkit.create_model("tiny", dropout=0.5)
    params = {k: v.clone() for k, v in net.named_parameters()}
    ctx = SimpleNamespace(net=net, config=TrainConfig(batch_size=2, bn_calibration=5), device=torch.device("cpu"),
                          dataset=PatchDataset(examples, target=16, samples_per_epoch=15), amp_dtype=None)  # 15 // 3 = 5
    calibrate_batch_norm(ctx)

    conv, norm = net.encoder[0].body[0], net.encoder[0].body[1]  # the first convolution and its BatchNorm
    batches = [np.stack([examples[i].image[:, t : t + 16, c : c + 16] for i, t, c in windows[s : s + 2]]) for s in (0, 2, 4)]
    with torch.no_grad():
        features = [conv(torch.from_numpy(b)) for b in batches]
    expected_mean = torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0)
    expected_var = torch.stack([f.var((0, 2, 3)) for f in features]).mean(0)  # unbiased per batch, as BatchNorm keeps
    assert torch.allclose(norm.running_mean, expected_mean, atol=1e-6)
    assert torch.allclose(norm.running_var, expected_var, rtol=1e-5)
    assert norm.momentum == 0.1 and net.training  # left as found
    assert all(torch.equal(v, params[k]) for k, v in net.named_parameters())


def test_bn_calibration_changes_no_weight_that_training_learns(data, tmp_path):
    options = dict(steps=12, deterministic=True, **TINY)  # two epochs: calibration runs between them
    plain = weights(unetkit.train(*data, tmp_path / "plain", bn_calibration=0, **options))
    calibrated = weights(unetkit.train(*data, tmp_path / "calibrated", **options))
    statistics = [k for k in plain if k.endswith(("running_mean", "running_var"))]
    assert statistics and all(not torch.equal(plain[k], calibrated[k]) for k in statistics)
    learned = [k for k in plain if k not in statistics and not k.endswith("num_batches_tracked")]
    assert all(torch.equal(plain[k], calibrated[k]) for k in learned)
