"""Sharded prediction: row parts as a whole-image pass gives them, the plan, reruns that skip, the folder's lock, torchrun."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from _runs import save_run
from crashing import check_predictions
from unetkit import create_model
from unetkit.cli import main
from unetkit.io import ArraySource, write_image
from unetkit.prediction import PredictConfig, Predictor, collect_inputs
from unetkit.prediction.ledger import STATE_DIR, Ledger, output_lock
from unetkit.prediction.sharding import CRASH_HOOK, plan

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 96 x 80 with 32-pixel tiles: 4 rows of 3 tiles (in batches of 2, across rows), streamed (and split among ranks) above 0.005 Mpx; the rest in memory.
FLAGS = ["--tile-size", "32", "--tile-batch", "2", "--stream-above", "0.005", "--threads", "1"]


def model(padding: str):
    torch.manual_seed(0)
    if padding == "valid":
        return create_model("paper", base_width=4, dropout=0.0).eval()  # tiles overlap by a few (equal) pixels
    return create_model("tiny").eval()


@pytest.fixture
def job(tmp_path):
    """A tiny run and a folder of 6 images (4 PNGs, a 2-page stack) and one 96 x 80 tiled TIFF to be split."""
    run = tmp_path / "run"
    net = model("same")
    save_run(run, net)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(48, 48), (64, 56), (56, 64), (48, 64)]):
        write_image(tmp_path / "in" / f"img{i}.png", rng.integers(0, 255, (h, w), dtype=np.uint8))
    tifffile.imwrite(tmp_path / "in" / "stack.tif", rng.integers(0, 255, (2, 48, 48), dtype=np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "in" / "big.tif", rng.integers(0, 255, (96, 80), dtype=np.uint8), tile=(32, 32))
    return run, tmp_path / "in"


def outputs(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def stamps(out) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file() and p.name != "predict_config.json"}


def predict(run, images, out, *flags) -> int:
    return main(["predict", str(run), str(images), "--out", str(out), *FLAGS, *flags])


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_row_parts_equal_the_whole_image_pass_bit_for_bit(padding):
    net = model(padding)
    predictor = Predictor.create(net, PredictConfig(tile_size=net.valid_input_size(40, 40)[0], tile_batch=3))
    source = ArraySource(np.random.default_rng(1).integers(0, 255, (1, 96, 80), dtype=np.uint8))
    assert predictor.grid(96, 80).rows.count >= 3
    whole = np.concatenate([band for _, band in predictor.bands(source)], axis=1)
    for cuts in ([0, 13, 50, 96], [0, 48, 96], [0, 1, 95, 96]):  # anywhere, not only where tile rows start
        parts = [predictor.bands(source, rows=(top, bottom)) for top, bottom in zip(cuts, cuts[1:])]
        bands = [(top, band) for part in parts for top, band in part]
        assert [top for top, _ in bands][0] == 0 and sum(band.shape[1] for _, band in bands) == 96
        assert np.array_equal(np.concatenate([band for _, band in bands], axis=1), whole), f"cuts {cuts} changed some bits"


def test_the_plan_splits_a_large_image_among_ranks_and_skips_finished_work(job, tmp_path):
    run, images = job
    items = collect_inputs([images])
    predictor = Predictor.create(run, PredictConfig(tile_size=32, stream_above_mpix=0.005))
    ledger = Ledger(tmp_path / "out", "key")
    first = plan(items, predictor, ledger, ranks=2)
    big = next(i for i, item in enumerate(items) if item.name == "big")
    parts = first.splits[big]
    assert len(parts) == 2 and parts[0][0] == 0 and parts[-1][1] == 96 and parts[0][1] == parts[1][0]
    assert {t.rank for t in first.tasks if t.item == big} == {0, 1}  # each rank predicts rows of the large image
    assert sorted(t.item for t in first.tasks if t.rows is None) == [i for i in range(len(items)) if i != big]
    assert {t.rank for t in first.tasks if t.rows is None} == {0, 1} and len(plan(items, predictor, ledger, ranks=1).splits) == 0
    write_image(tmp_path / "out" / "img0_labels.png", np.zeros((48, 48), np.uint8))
    ledger.mark_done(items[1], [tmp_path / "out" / "img0_labels.png"])
    ledger.part_path(items[big], parts[1]).parent.mkdir(parents=True)
    ledger.part_path(items[big], parts[1]).write_bytes(b"")  # a finished part of a killed job
    second = plan(items, predictor, ledger, ranks=2)
    assert second.skipped == 1 and 1 not in {t.item for t in second.tasks}
    assert [t.rows for t in second.tasks if t.item == big] == [parts[0]] and second.splits[big] == parts


def test_a_rerun_skips_complete_outputs_and_recomputes_what_changed(job, tmp_path, capsys):
    run, images = job
    out = tmp_path / "out"
    assert predict(run, images, out) == 0
    first, written = stamps(out), outputs(out)
    assert len(first) == 21 and "wrote 21 files" in capsys.readouterr().out
    assert predict(run, images, out) == 0  # same run, same settings: nothing to do
    captured = capsys.readouterr()
    assert "wrote 0 files" in captured.out and "7 of 7 images already predicted" in captured.err
    assert stamps(out) == first and outputs(out) == written
    (out / "img2_probs.tif").unlink()  # an output gone, an input changed: those two images again
    write_image(images / "img3.png", np.zeros((48, 64), np.uint8))
    assert predict(run, images, out) == 0 and "wrote 6 files" in capsys.readouterr().out
    changed = {name for name, stamp in stamps(out).items() if first.get(name) != stamp}
    assert changed == {f"img{i}_{kind}" for i in (2, 3) for kind in ("labels.png", "probs.tif", "overlay.png")}
    assert predict(run, images, out, "--overlap", "0.5") == 0 and "wrote 21 files" in capsys.readouterr().out
    assert all(stamps(out)[name] != first[name] for name in first)


def test_a_second_job_into_the_same_folder_is_refused_in_one_line(job, tmp_path, capsys):
    run, images = job
    out = tmp_path / "out"
    with output_lock(out):  # a job running in this process
        assert predict(run, images, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"another prediction job writes here (pid {os.getpid()}" in err, err
    assert not (out / "img0_labels.png").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = out / STATE_DIR / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid, "started": "0"}))  # a killed job's
    assert predict(run, images, out) == 0 and (out / "img0_labels.png").exists() and not lock.exists()


def torchrun(run, images, out, env=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "unetkit",
               "predict", str(run), str(images), "--out", str(out), *FLAGS]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_two_ranks_write_the_bytes_of_one_process(job, tmp_path):
    run, images = job
    assert predict(run, images, tmp_path / "one") == 0
    result = torchrun(run, images, tmp_path / "two")
    assert result.returncode == 0, result.stderr[-30000:]
    assert result.stdout.count("wrote 21 files") == 1  # one line for the job
    one, two = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert sorted(one) == sorted(two) and len(one) == 22
    assert [name for name in one if one[name] != two[name]] == []
    assert not (tmp_path / "two" / STATE_DIR / "lock").exists() and not (tmp_path / "two" / STATE_DIR / "parts").exists()


def test_a_rank_killed_midway_leaves_whole_files_and_the_rerun_completes_them(job, tmp_path):
    run, images = job
    assert predict(run, images, tmp_path / "one") == 0
    out = tmp_path / "two"
    killed = torchrun(run, images, out, {CRASH_HOOK: "1:1"})  # rank 1 dies after its first task
    assert killed.returncode != 0
    check_predictions(out)  # whatever sits under a final name is whole
    assert len(list(out.glob("*_labels.*"))) < 7, "the kill came too late to test anything"
    assert list((out / STATE_DIR / "parts").glob("*.npy")), "rank 1 died after its part of the large image, which stays"
    result = torchrun(run, images, out)
    assert result.returncode == 0, result.stderr[-30000:]
    one, two = outputs(tmp_path / "one"), outputs(out)
    assert sorted(one) == sorted(two) and [name for name in one if one[name] != two[name]] == []
    assert not list(out.rglob(".*.tmp")) and not (out / STATE_DIR / "parts").exists()
