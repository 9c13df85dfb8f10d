"""The run folder: weights, configs and training state, written atomically.

    RUN/model.safetensors   last weights (safetensors: loading never runs code)
    RUN/best.safetensors    best validation weights, when validation ran
    RUN/config.json         {"model": ModelConfig, "data": DataConfig, ...}
    RUN/train_state.pt      optimizer, scheduler, RNG, epoch, step (weights_only=True)
    RUN/final/              the same recipe trained on every image (`refit`), a run folder of its own ...
    RUN/final.json          ... complete once this exists: loading RUN then picks it
"""

from __future__ import annotations

import dataclasses
import io as _bytes_io
import json
from pathlib import Path

import torch

from .config import DataConfig, ModelConfig, from_dict, to_dict
from .errors import UserError, first_line
from .io import atomic_path, write_text
from .model import UNetBase, build_model
from .version import __version__

CONFIG_FILE = "config.json"
STATE_FILE = "train_state.pt"
WEIGHT_FILES = {"last": "model.safetensors", "best": "best.safetensors"}
FINAL_DIR, FINAL_MARK = "final", "final.json"


@dataclasses.dataclass
class Run:
    """A loaded run: the model (in eval mode), its data config and the whole config dict."""

    model: UNetBase
    data: DataConfig
    config: dict = dataclasses.field(default_factory=dict)
    path: Path | None = None  # None for a model that was never saved


def save_config(run_dir: str | Path, model_config: ModelConfig, data_config: DataConfig, **sections) -> dict:
    """Write `config.json`: the resolved configs, each section a dict; returns what it wrote."""
    config = {"unetkit_version": __version__, "model": to_dict(model_config), "data": to_dict(data_config)}
    config.update({k: to_dict(v) if dataclasses.is_dataclass(v) else v for k, v in sections.items()})
    write_text(Path(run_dir) / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return config


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete the temporary files that killed writes left in a run folder (`.NAME.XXXX.tmp`); returns them.

    Only for a run folder being resumed: one run owns it, so no live write can be hit.
    """
    stale = sorted(Path(run_dir).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_weights(run_dir: str | Path, model: torch.nn.Module, which: str = "last") -> Path:
    """Write the model's weights as safetensors, atomically."""
    from safetensors.torch import save

    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(run_dir) / WEIGHT_FILES[which]
    with atomic_path(path) as tmp:
        tmp.write_bytes(save(state, metadata={"unetkit_version": __version__}))
    return path


def save_train_state(run_dir: str | Path, state: dict) -> None:
    """Write the training state (tensors, numbers, strings only), atomically."""
    buffer = _bytes_io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(Path(run_dir) / STATE_FILE) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_train_state(run_dir: str | Path) -> dict | None:
    """The training state, or None when the run has none. Never unpickles code."""
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - includes the UnpicklingError of a hostile file
        reason = first_line(exc)
        raise UserError(
            f"training state rejected ({reason})", path=path, fix="delete it to restart training from the weights"
        ) from exc


def read_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise UserError("not a unetkit run folder (no config.json)", path=run_dir, fix="pass the --out folder of `unetkit train`")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"unreadable config ({exc})", path=path, fix="restore config.json from the run") from exc
    if not isinstance(config, dict) or "model" not in config:
        raise UserError("config has no 'model' section", path=path, fix="restore config.json from the run")
    return config


def read_data_config(run_dir: str | Path) -> DataConfig:
    """How the run read its masks (class count, ignored value, colours, instances): used again at prediction and evaluation."""
    return from_dict(DataConfig, read_config(run_dir).get("data", {}), source=f"{run_dir}/{CONFIG_FILE}")


def resolved_weights(run_dir: str | Path, weights: str = "auto") -> str:
    """"final", "best" or "last": "auto" is final once complete (the recipe trained on every image, `refit`),
    else best where validation ran, else last."""
    run_dir = Path(run_dir)
    if weights != "auto":
        return weights
    return "final" if (run_dir / FINAL_MARK).exists() else "best" if (run_dir / WEIGHT_FILES["best"]).exists() else "last"


def chosen_weights(run_dir: str | Path, weights: str = "auto") -> tuple[Path, str]:
    """(folder, "best" or "last") of the weights `weights` names: "final" is the last weights of RUN/final."""
    run_dir, weights = Path(run_dir), resolved_weights(run_dir, weights)
    if weights == "final":
        if not (run_dir / FINAL_MARK).exists():
            raise UserError("the run has no complete final model", path=run_dir / FINAL_MARK,
                            fix="train with --refit (or resume the run to finish it), or choose --weights best or last")
        return run_dir / FINAL_DIR, "last"
    return run_dir, weights


def load_run(run_dir: str | Path, weights: str = "auto") -> Run:
    """Load a run folder with the weights `weights` names (see `chosen_weights`)."""
    run_dir, weights = chosen_weights(run_dir, weights)
    config = read_config(run_dir)
    source = str(run_dir / CONFIG_FILE)
    model = build_model(from_dict(ModelConfig, config["model"], source=source))  # an encoder's init: no download
    data = from_dict(DataConfig, config.get("data", {}), source=source)
    load_weights(model, run_dir / WEIGHT_FILES[weights])
    return Run(model=model.eval(), data=data, config=config, path=run_dir)


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load safetensors weights into `model`, with a clear error on any mismatch."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise UserError("weights not found", path=path, fix="train first, or pass the right run folder")
    try:
        state = load_file(path)
    except Exception as exc:  # noqa: BLE001 - corrupt or truncated file
        raise UserError(f"unreadable weights ({exc})", path=path, fix="restore the file or retrain") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = first_line(exc)
        raise UserError(f"weights do not fit the model ({first})", path=path, fix="check config.json beside it") from exc


def load(run_dir: str | Path, weights: str = "auto") -> Run:
    """A run folder loaded for prediction: `run.model` (in eval mode), `run.data` (how to normalise), `run.config`."""
    return load_run(run_dir, weights)
