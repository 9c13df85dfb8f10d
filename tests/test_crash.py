"""SIGKILL at random moments: nothing half-written under a final name, and training resumes exactly.

`benchmarks/crash.py` runs the long version (>= 20 kills).
"""

import numpy as np

from crashing import crash_prediction, crash_training, kill_after, make_data, train_command, weights_equal


def test_training_killed_at_random_resumes_to_the_uninterrupted_weights(tmp_path):
    data = make_data(tmp_path / "data")
    straight = tmp_path / "straight"
    assert kill_after(train_command(data, straight, resume=False), 600) == 0
    crashed = tmp_path / "crashed"
    kills = crash_training(data, crashed, kills=3, rng=np.random.default_rng(0), max_delay=3.0)  # before 300 steps end
    assert kills >= 1
    assert weights_equal(straight, crashed)


def test_prediction_killed_at_random_leaves_only_whole_files(tmp_path):
    data = make_data(tmp_path / "data")
    run = tmp_path / "run"
    assert kill_after(train_command(data, run, resume=False), 600) == 0
    crash_prediction(run, data / "images", tmp_path / "out", kills=2, rng=np.random.default_rng(1))
    assert len(list((tmp_path / "out").glob("*_labels.png"))) == 6
