"""The speed defaults do what they say: bf16 where native, channels_last, validation on a time share."""

import csv

import pytest
import torch

import unetkit
from _train_data import TINY, make_dataset
from unetkit import RunConfig, UserError, devices
from unetkit.devices import autocast_dtype

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("speed"), n=4, size=48)


def rows(run):
    return list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))


def validated(run) -> list[bool]:
    return [bool(row["val_s"]) and bool(row["val_mean_iou"]) for row in rows(run)]


def test_validation_keeps_to_its_share_and_always_ends_the_run(data, tmp_path):
    # Epochs of 6 steps; a share no validation fits in: only the first and the last epoch validate.
    run = unetkit.train(*data, tmp_path / "rare", steps=24, val_share=1e-9, **TINY)
    assert validated(run) == [True, False, False, True]
    assert [row["val_s"] == "" for row in rows(run)] == [False, True, True, False]


@pytest.mark.parametrize("options", [dict(val_share=1.0), dict(val_share=1e-9, deterministic=True)])
def test_every_epoch_validates_at_share_one_and_in_deterministic_runs(data, tmp_path, options):
    run = unetkit.train(*data, tmp_path / "every", steps=18, **options, **TINY)
    assert validated(run) == [True, True, True]


def test_a_run_resumed_at_an_unvalidated_end_validates_it(data, tmp_path):
    def stop_after_second_epoch(loop, row):
        if loop.step == 12:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        unetkit.train(*data, tmp_path / "run", steps=24, val_share=1e-9, hooks={"on_epoch_end": stop_after_second_epoch},
                      **TINY)
    assert validated(tmp_path / "run") == [True, False]
    unetkit.train(*data, tmp_path / "run", steps=12, resume=True, **TINY)
    assert [int(row["step"]) for row in rows(tmp_path / "run")] == [6, 12]
    assert validated(tmp_path / "run") == [True, True]


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_is_on_by_default_where_native(monkeypatch, native):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert autocast_dtype(RunConfig(), cpu) == (torch.bfloat16 if native else None)
    assert autocast_dtype(RunConfig(cpu_bf16=False), cpu) is None
    if native:
        assert autocast_dtype(RunConfig(cpu_bf16=True), cpu) == torch.bfloat16
    else:
        with pytest.raises(UserError, match="no native bf16"):
            autocast_dtype(RunConfig(cpu_bf16=True), cpu)


@pytest.mark.parametrize("channels_last, norm", [(True, "batch"), (False, "batch"), (True, "instance"), (True, "group")])
def test_channels_last_trains_in_nhwc_and_saves_plain_weights(data, tmp_path, channels_last, norm):
    """NHWC as asked, except for group norm on a CPU: slower there, so contiguous."""
    layouts = []

    def record(model, loop):
        convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1) and m.in_channels > 1]  # else both layouts coincide
        layouts.append({w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs})

    run = unetkit.train(*data, tmp_path / "run", steps=3, channels_last=channels_last, norm=norm,
                        hooks={"on_train_end": record}, **TINY)
    assert layouts == [{channels_last and norm != "group"}]
    reloaded = unetkit.load(run).model
    assert all(p.is_contiguous() for p in reloaded.parameters())
