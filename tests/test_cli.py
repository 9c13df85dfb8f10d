import subprocess
import sys

from unetkit import __version__
from unetkit.cli import main


def test_version():
    out = subprocess.run([sys.executable, "-m", "unetkit", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"unetkit {__version__}"


def test_model_summary(capsys):
    assert main(["model", "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    assert "31,030,658" in out and "388 x 388" in out and "receptive field" in out


def test_model_bad_size_is_one_line_exit_2(capsys):
    assert main(["model", "--preset", "default", "--input-size", "500", "512"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nearest valid: 496 or 512" in err


def test_unknown_preset(capsys):
    assert main(["model", "--preset", "huge"]) == 2
    assert "valid presets" in capsys.readouterr().err
