"""Images of any size -> probabilities, labels, instances and files: tiling, backends, the predictor, writers,
sharded jobs (torchrun), export."""

from .backends import probability_fn, to_probabilities, torch_logits_fn
from .postprocess import SEEDS, InstanceConfig, instances
from .predictor import BACKENDS, OUT_FORMATS, PredictConfig, Predictor, label_image, labels_from, predict
from .sharding import predict_files
from .tiling import make_grid, predict_bands
from .writers import collect_inputs

__all__ = [
    "BACKENDS", "OUT_FORMATS", "SEEDS", "probability_fn", "to_probabilities", "torch_logits_fn", "InstanceConfig", "instances", "PredictConfig", "Predictor",
    "label_image", "labels_from", "predict", "make_grid", "predict_bands", "collect_inputs", "predict_files",
]
