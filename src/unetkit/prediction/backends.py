"""Backends are plain functions from a batch of normalised tiles (N, C, h, w) float32 to logits.

PyTorch (`torch_logits_fn`) and ONNX Runtime (`export.onnx_logits_fn`) both
fit; `probability_fn` wraps any of them with the softmax and the 8-pose
test-time augmentation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

LogitsFn = Callable[[np.ndarray], np.ndarray]


def torch_logits_fn(model, device="cpu", channels_last: bool = False) -> LogitsFn:
    """Batch (N, C, h, w) float32 -> logits, through a PyTorch model in inference mode."""
    import torch

    if channels_last:  # converted on a copy: the caller's model is left as it was
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    model = model.to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def logits(batch: np.ndarray) -> np.ndarray:
        training = model.training  # a model in training (validation during fit) goes back to training
        try:
            with torch.inference_mode():
                x = torch.from_numpy(batch).to(device).contiguous(memory_format=memory_format)
                return model.eval()(x).float().cpu().numpy()
        finally:
            model.train(training)

    return logits


def to_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over classes (axis 1), or the sigmoid for a one-class model."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    return (torch.sigmoid(t) if t.shape[1] == 1 else torch.softmax(t, dim=1)).numpy()


# The dihedral group of the square: k quarter turns, then optionally a left-right flip.
DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def _transform(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(batch, k, axes=(2, 3))
    return np.ascontiguousarray(out[..., ::-1] if flip else out)


def _untransform(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    return np.rot90(batch[..., ::-1] if flip else batch, -k, axes=(2, 3))


def probability_fn(logits_fn: LogitsFn, tta: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Batch -> class probabilities; with `tta`, the mean over the 8 flips and rotations.

    Averaging happens in probability space (after the softmax). A rotated
    tile is a valid input too: the size rules hold per axis.
    """
    transforms = DIHEDRAL if tta else DIHEDRAL[:1]

    def probabilities(batch: np.ndarray) -> np.ndarray:
        total = None
        for k, flip in transforms:
            p = _untransform(to_probabilities(logits_fn(_transform(batch, k, flip))), k, flip)
            total = p if total is None else total + p
        return total / len(transforms) if len(transforms) > 1 else np.ascontiguousarray(total)

    return probabilities


def shifted(logits_fn: LogitsFn, offsets: np.ndarray) -> LogitsFn:
    """`logits_fn` plus a per-class offset (see `weightmap.prior_offsets`)."""
    return lambda batch: logits_fn(batch) + offsets[None, :, None, None]
