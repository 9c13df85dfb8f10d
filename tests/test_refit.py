"""The final model on every image (`refit`): RUN/final trains the held-out run's recipe on all files, loading picks it,
an interrupted run finishes it on resume, a time budget is halved between the two, and the plan turns it on for small
timed sets only."""

import json
from types import SimpleNamespace

import pytest
from safetensors.torch import load_file

import unetkit
from _train_data import TINY, make_dataset
from unetkit.checkpoint import FINAL_MARK, load_run
from unetkit.cli import main
from unetkit.config import RunConfig, TrainConfig
from unetkit.errors import UserError
from unetkit.prediction.export import export_run
from unetkit.training.context import Loop
from unetkit.training.stopping import Stopper
from unetkit.zoo.readme import validation_section

REFIT = dict(steps=3, refit=True, deterministic=True, **TINY)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("discs"), n=5)


@pytest.fixture(scope="module")
def refitted(data, tmp_path_factory):
    return unetkit.train(*data, tmp_path_factory.mktemp("refit") / "run", **REFIT)


def config(run) -> dict:
    return json.loads((run / "config.json").read_text())


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_the_final_model_trains_the_recipe_on_every_image_for_the_same_steps(refitted):
    held_out, final = config(refitted), config(refitted / "final")
    assert held_out["split"]["val"] and final["split"] == {"train": sorted(held_out["split"]["train"] + held_out["split"]["val"]),
                                                           "val": []}
    assert final["run"]["steps"] == 3 and json.loads((refitted / FINAL_MARK).read_text())["steps"] == 3
    for key in ("patch_size", "batch_size", "lr", "warmup_steps", "seed", "loss"):
        assert final["train"][key] == held_out["train"][key], key
    assert not final["train"]["refit"] and final["train"]["val_fraction"] == 0
    assert not same(load_file(refitted / "final" / "model.safetensors"), load_file(refitted / "model.safetensors"))


def test_loading_the_run_picks_the_final_model_unless_asked_otherwise(refitted, data, tmp_path):
    assert load_run(refitted).path == refitted / "final" == load_run(refitted, "final").path
    assert load_run(refitted, "last").path == refitted
    out = tmp_path / "predictions"
    assert main(["predict", str(refitted), str(data[0]), "--out", str(out), "--no-probs", "--no-overlay"]) == 0
    assert json.loads((out / "predict_config.json").read_text())["run"].endswith("final")


def test_a_run_without_a_final_model_says_so_when_asked_for_one(data, tmp_path):
    run = unetkit.train(*data, tmp_path / "run", steps=1, **TINY)
    assert load_run(run).path == run  # auto: best or last
    with pytest.raises(UserError, match="no complete final model"):
        load_run(run, "final")


def test_a_run_stopped_before_its_final_model_finishes_it_on_resume(refitted, data, tmp_path):
    def stop(*_):
        raise RuntimeError("killed between the two")

    with pytest.raises(RuntimeError):
        unetkit.train(*data, tmp_path / "run", hooks={"on_train_end": stop}, **REFIT)
    assert not (tmp_path / "run" / "final").exists()
    unetkit.train(*data, tmp_path / "run", resume=True, **REFIT)
    assert same(load_file(tmp_path / "run" / "final" / "model.safetensors"), load_file(refitted / "final" / "model.safetensors"))


def test_a_held_out_run_resumed_for_more_steps_trains_its_final_model_again(data, tmp_path):
    run = unetkit.train(*data, tmp_path / "run", **REFIT)
    unetkit.train(*data, run, resume=True, **{**REFIT, "steps": 4})
    assert config(run / "final")["run"]["steps"] == 4 and json.loads((run / FINAL_MARK).read_text())["steps"] == 4


def test_the_held_out_run_gets_half_the_time_budget():
    def budget(refit: bool) -> float:
        ctx = SimpleNamespace(run=RunConfig(time_budget=10), config=TrainConfig(refit=refit))
        return Stopper(ctx, Loop()).budget

    assert budget(False) == 600 and budget(True) == 300


def test_refit_needs_held_out_images():
    with pytest.raises(ValueError, match="refit needs held-out validation"):
        TrainConfig(refit=True, val_fraction=0.0)


def test_a_final_models_package_readme_gives_the_recipes_held_out_scores(refitted):
    text = validation_section(load_run(refitted), "final", curves=False)
    assert "trained again on every image" in text and "| mean IoU |" in text


def test_export_writes_beside_the_final_weights(refitted):
    assert export_run(refitted, "onnx").path == refitted / "final" / "model.onnx"
