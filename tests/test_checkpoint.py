import os
import pickle

import pytest
import torch

from _runs import save_run
from unetkit import DataConfig, UserError, create_model, load
from unetkit.checkpoint import load_run, load_train_state, save_config, save_train_state


def make_run(path):
    torch.manual_seed(0)
    model = create_model("tiny")
    save_run(path, model)
    return model


def test_round_trip_is_exact(tmp_path):
    model = make_run(tmp_path).eval()
    loaded = load(tmp_path)
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)
    assert loaded.data == DataConfig() and loaded.path == tmp_path and not loaded.model.training


def test_train_state_round_trip(tmp_path):
    state = {"epoch": 3, "step": 40, "rng": torch.get_rng_state(), "optimizer": {"lr": 0.1}}
    save_train_state(tmp_path, state)
    back = load_train_state(tmp_path)
    assert back["epoch"] == 3 and torch.equal(back["rng"], state["rng"])


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_hostile_pickle_state_is_rejected_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train_state.pt").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(UserError, match="training state rejected"):
        load_train_state(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_missing_and_mismatched(tmp_path):
    with pytest.raises(UserError, match="not a unetkit run folder"):
        load(tmp_path)
    make_run(tmp_path)
    save_config(tmp_path, create_model("tiny", base_width=8).config, DataConfig())
    with pytest.raises(UserError, match="weights do not fit the model"):
        load_run(tmp_path)
