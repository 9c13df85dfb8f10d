"""SIGKILL on progress signals: nothing half-written under a final name, and training resumes exactly.

Each kill is aimed at a moment the child reaches (a checkpoint written, a
temporary file of an atomic write present, a step, outputs written) and the
harness reports where it landed; every kill must land where it was aimed.
`benchmarks/crash.py` runs the long version (>= 20 kills).
"""

import pytest

from crashing import (
    AfterFirstCheckpoint,
    AfterOutputs,
    AtStep,
    MidWrite,
    crash_prediction,
    crash_training,
    make_data,
    straight_run,
    weights_equal,
)

PREDICTED_IMAGES = 8


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The data and an uninterrupted run of it."""
    return straight_run(tmp_path_factory.mktemp("crash"))


def test_training_killed_after_a_checkpoint_mid_write_and_at_a_step_resumes_exactly(straight, tmp_path):
    data, reference = straight
    # AtStep(12) from where the mid-write kill left it (step 2 or 3): mid-epoch, after the first validation (step 10).
    kills = crash_training(data, tmp_path / "crashed", [AfterFirstCheckpoint(), MidWrite(), AtStep(12)])
    assert [kill.landed for kill in kills] == [kill.intended for kill in kills], kills
    assert weights_equal(reference, tmp_path / "crashed")
    assert not list((tmp_path / "crashed").glob(".*.tmp")), "a resumed run keeps the temporary files of killed writes"


def test_prediction_killed_mid_write_and_after_outputs_leaves_only_whole_files(straight, tmp_path):
    _, run = straight
    images = make_data(tmp_path / "many", count=PREDICTED_IMAGES, side=96) / "images"
    out = tmp_path / "out"
    kills = crash_prediction(run, images, out, [MidWrite(of=("*.png", "*.tif")), AfterOutputs(3)])
    assert [kill.landed for kill in kills] == [kill.intended for kill in kills], kills
    assert len(list(out.glob("*_labels.png"))) == PREDICTED_IMAGES
