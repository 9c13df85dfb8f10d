"""Transfer: where a run's first weights come from, and how the pretrained part learns.

- `--encoder-weights imagenet|FILE|none`: the encoder's weights (model/encoder_weights.py).
- `--init RUN`: every weight of an earlier run of the same architecture; the
  1x1 head starts anew when the class count differs (another lab's model,
  fine-tuned on one's own labels).
- Pretrained weights learn at `encoder_lr_scale` x the learning rate (0.1 by
  default: large early gradients from the fresh decoder would wreck the
  pretrained features), may stay frozen for `freeze_encoder_steps`, and keep
  their BatchNorm statistics below a per-process batch of
  `freeze_encoder_bn_below` (4): Wu and He (Group Normalization, 2018) measure
  BatchNorm's ImageNet error rising from 24.8% at 8 images per batch to 27.3%
  at 4 and 34.7% at 2; below 4 the batch statistics are noisier than the
  pretrained running averages are off.
- The normalisation the weights were trained with: ImageNet's mean and std for
  ImageNet weights (and, as a guess that holds for the hub's checkpoints, for
  a weights file), the --init run's own normalisation for --init.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..checkpoint import WEIGHT_FILES, chosen_weights, read_config, read_data_config
from ..config import ModelConfig, TrainConfig, from_dict
from ..errors import UserError, first_line
from .options import Recipe

ENCODER_LR_SCALE = 0.1  # the default for pretrained encoders (segmentation fine-tuning practice: 0.1x for the backbone)


def resolve_transfer(recipe: Recipe) -> Recipe:
    """The recipe with the transfer choices made: encoder weights, encoder lr scale, normalisation."""
    model, data, train = recipe.model, recipe.data, recipe.train
    given = train.encoder_weights not in (None, "none")
    if given and model.encoder is None:
        raise UserError(f"--encoder-weights {train.encoder_weights} needs an encoder", fix="add --encoder NAME, or drop --encoder-weights")
    if given and train.init:
        raise UserError("--init and --encoder-weights both set the first weights", fix="give one of them")
    weights = train.encoder_weights or ("imagenet" if model.encoder and not train.init else "none")
    pretrained = weights != "none" or train.init is not None
    scale = train.encoder_lr_scale
    if scale is None:
        scale = ENCODER_LR_SCALE if model.encoder and pretrained else 1.0
    if data.normalization == "auto":
        data = dataclasses.replace(data, **_normalization(weights, train.init))
    train = dataclasses.replace(train, encoder_weights=weights, encoder_lr_scale=scale)
    return Recipe(model, data, train)


def _normalization(weights: str, init: str | None) -> dict:
    if init is not None:
        stored = read_data_config(init)
        return {"normalization": stored.normalization, "percentiles": stored.percentiles}
    return {"normalization": "imagenet" if weights != "none" else "percentile"}


def is_pretrained(config: TrainConfig) -> bool:
    return config.encoder_weights != "none" or config.init is not None


def load_first_weights(net: torch.nn.Module, config: TrainConfig) -> None:
    """Put the run's first weights in `net`: an earlier run's, an encoder's, or leave the random ones."""
    if config.init is not None:
        init_from_run(net, config.init)
    elif config.encoder_weights != "none":
        from ..model.encoder_weights import load_encoder_weights

        load_encoder_weights(net.encoder, config.encoder_weights)


def init_from_run(net: torch.nn.Module, run_dir: str | Path) -> list[str]:
    """Load the weights of run `run_dir` (best if saved, else last) into `net`, bit for bit.

    The architectures must match (every ModelConfig field but `n_classes`);
    when the class counts differ the 1x1 head keeps its fresh initialisation.
    Returns the keys left as they were.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    theirs = from_dict(ModelConfig, read_config(run_dir)["model"], source=str(run_dir))
    ours = net.config
    differ = [f.name for f in dataclasses.fields(ModelConfig) if f.name != "n_classes" and getattr(theirs, f.name) != getattr(ours, f.name)]
    if differ:
        detail = "; ".join(f"{name} {getattr(theirs, name)!r} there, {getattr(ours, name)!r} here" for name in differ)
        raise UserError(f"--init run has another architecture ({detail})", path=run_dir,
                        fix="train with the run's model options (see its recipe.yaml: preset, encoder, base_width, ...) and images of its channels")
    folder, which = chosen_weights(run_dir)  # as `unetkit predict RUN` would use it: final, best or last
    path = folder / WEIGHT_FILES[which]
    if not path.exists():
        raise UserError("--init run has no weights", path=run_dir, fix="train it first, or pass another run")
    try:
        state = load_file(path)
    except Exception as exc:  # noqa: BLE001 - a corrupt file
        raise UserError(f"unreadable weights ({first_line(exc)})", path=path, fix="pass another run") from exc
    kept = head_keys(net) if theirs.n_classes != ours.n_classes else []
    net.load_state_dict({**state, **{k: v for k, v in net.state_dict().items() if k in kept}}, strict=True)
    return kept


def head_keys(net: torch.nn.Module) -> list[str]:
    """State-dict keys of the final 1x1 convolution (the last conv of `net.head`)."""
    head = net.head if isinstance(net.head, torch.nn.Conv2d) else net.head[-1]
    name = next(name for name, m in net.named_modules() if m is head)
    return [f"{name}.{p}" for p, _ in head.named_parameters()]


# --------------------------------------------------------------------------- during training


def param_groups(net: torch.nn.Module, config: TrainConfig) -> list[dict]:
    """The optimiser's groups: the encoder at `encoder_lr_scale` x the learning rate, the rest at 1x."""
    encoder = list(net.encoder_parameters()) if hasattr(net, "encoder_parameters") else []
    if not encoder:
        return [{"params": list(net.parameters()), "lr_scale": 1.0}]
    ids = {id(p) for p in encoder}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return [{"params": rest, "lr_scale": 1.0}, {"params": encoder, "lr_scale": config.encoder_lr_scale}]


def prepare_encoder(net: torch.nn.Module, config: TrainConfig, per_process_batch: int) -> None:
    """Freeze a pretrained encoder's BatchNorm statistics for small batches (see the module docstring)."""
    if hasattr(net, "encoder_bn_frozen"):
        net.encoder_bn_frozen = is_pretrained(config) and per_process_batch < config.freeze_encoder_bn_below
        net.train(net.training)


def follow_freeze(net: torch.nn.Module, config: TrainConfig, step: int) -> None:
    """The encoder frozen before step `freeze_encoder_steps`, learning from it on."""
    if config.freeze_encoder_steps and hasattr(net, "freeze_encoder"):
        frozen = step < config.freeze_encoder_steps
        if frozen != net.encoder_frozen:
            net.freeze_encoder(frozen)
