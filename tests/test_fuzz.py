"""Damaged files through every reader and the CLI: a valid result or a one-line UserError.

A bounded number of cases here; `benchmarks/fuzz.py` runs the long version.
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _runs import save_run
from fuzzing import Hang, changes, damage_run, fingerprint, load_run_outcome, mutate, read_outcome, seeds, time_limit
from unetkit import create_model
from unetkit.checkpoint import save_train_state
from unetkit.cli import main
from unetkit.io import read_image
from unetkit.prediction.ledger import STATE_DIR

SEEDS = seeds()
NAMES = ["bild ü 01", "scan 2", "séction_03", "x"]  # spaces and unicode in file names


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(SEEDS)), case=st.integers(0, 2**32 - 1))
def test_readers_answer_every_damaged_file(seed, case):
    suffix, data = SEEDS[seed]
    damaged = mutate(data, np.random.default_rng(case))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{NAMES[case % len(NAMES)]}{suffix}"
        path.write_bytes(damaged)
        with time_limit(20):
            read_outcome(path)  # raises on a traceback-worthy exception or a malformed error
        assert path.read_bytes() == damaged  # the input is never modified


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    model = create_model("tiny")
    return save_run(run, model)


@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.sampled_from(sorted(SEEDS)), case=st.integers(0, 2**32 - 1))
def test_cli_predict_and_evaluate_answer_every_damaged_file(tiny_run, capsys, seed, case):
    suffix, data = SEEDS[seed]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        name = NAMES[case % len(NAMES)]
        (tmp / "in").mkdir()
        (tmp / "in" / f"{name}{suffix}").write_bytes(mutate(data, np.random.default_rng(case)))
        with time_limit(60):
            code = main(["predict", str(tiny_run), str(tmp / "in"), "--out", str(tmp / "out")])
        _check_answer(code, capsys)
        if code == 0:
            for path in (tmp / "out").iterdir():
                assert not path.name.startswith(".") or path.name == STATE_DIR, f"temporary file left: {path.name}"
                if path.suffix in (".png", ".tif"):
                    read_image(path)  # every output is a valid image
            with time_limit(60):
                code = main(["evaluate", "--pred", str(tmp / "out"), "--gt", str(tmp / "in"), "--boundary-class", "0"])
            _check_answer(code, capsys)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(case=st.integers(0, 2**32 - 1))
def test_damaged_run_folders_load_or_fail_in_one_line(case):
    import torch

    rng = np.random.default_rng(case)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        model = create_model("tiny")
        save_run(run, model)
        save_train_state(run, {"loop": {"step": 3}, "rng": torch.get_rng_state()})
        damage_run(run, rng)
        before = fingerprint(run)
        with time_limit(20):
            load_run_outcome(run)
        assert changes(before, fingerprint(run)) == (0, 0), "loading a run modified or lost its files"


def test_changes_counts_modified_and_lost_files(tmp_path):
    for name in ("config.json", "model.safetensors", "train_state.pt"):
        (tmp_path / name).write_bytes(name.encode())
    before = fingerprint(tmp_path)
    (tmp_path / "config.json").write_bytes(b"{}")  # modified
    (tmp_path / "train_state.pt").unlink()  # lost
    (tmp_path / "extra.txt").write_bytes(b"new")  # added: neither
    assert changes(before, fingerprint(tmp_path)) == (1, 1)
    assert changes(before, before) == (0, 0)


@settings(max_examples=20, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.sampled_from(sorted(k for k, (suffix, _) in SEEDS.items() if suffix == ".tif")), case=st.integers(0, 2**32 - 1))
def test_streamed_prediction_answers_every_damaged_tiff(tiny_run, capsys, seed, case):
    suffix, data = SEEDS[seed]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{NAMES[case % len(NAMES)]}{suffix}"
        path.write_bytes(mutate(data, np.random.default_rng(case)))
        with time_limit(60):  # --stream-above 0: read tile by tile, written band by band
            code = main(["predict", str(tiny_run), str(path), "--out", str(Path(tmp) / "out"), "--stream-above", "0"])
        _check_answer(code, capsys)
        if code == 0:
            for out in (Path(tmp) / "out").iterdir():
                assert not out.name.startswith(".") or out.name == STATE_DIR, f"temporary file left: {out.name}"


def _check_answer(code: int, capsys) -> None:
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err, err
    if code == 2:  # one error line (progress bars may stand before it)
        errors = [line for line in err.splitlines() if line.startswith("unetkit ")]
        assert len(errors) == 1 and "error:" in errors[0] and "fix:" in errors[0], err


def test_time_limit_catches_a_hang():
    import time

    with pytest.raises(Hang), time_limit(1):
        time.sleep(3)
