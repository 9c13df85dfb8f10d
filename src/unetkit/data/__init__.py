"""From files to training tensors: pairing, mask conventions, normalisation, windows, patches, weight maps, augmentation."""

from .augment import augment_batch, required_slack, sample_params
from .examples import Example, find_mask_convention, load_examples, read_pair, survey_masks
from .lazy import LazyExample, reads_lazily
from .masks import colour_image, describe, mask_to_classes
from .normalize import dataset_mean_std, intensity_stats, normalize
from .pairing import MASK_STEM_SUFFIXES, Pair, check_paired, group_key, name_groups, pair_files, split_pairs, strip_suffix
from .patches import PatchDataset
from .weightmap import (
    balancing_weights,
    border_weights,
    class_frequencies,
    median_frequency_weights,
    prior_offsets,
    weight_map,
)
from .windows import band_rows, center_crop, crop_mirrored, grid_windows, mirror_indices, read_mirrored

__all__ = [
    "augment_batch", "find_mask_convention", "colour_image", "describe", "required_slack", "sample_params", "Example", "load_examples", "read_pair", "survey_masks", "mask_to_classes",
    "dataset_mean_std", "intensity_stats", "normalize", "MASK_STEM_SUFFIXES", "Pair", "check_paired", "group_key", "name_groups", "pair_files",
    "split_pairs", "strip_suffix", "PatchDataset", "balancing_weights", "median_frequency_weights", "border_weights", "class_frequencies",
    "prior_offsets", "weight_map", "LazyExample", "reads_lazily", "band_rows", "center_crop", "crop_mirrored", "grid_windows", "mirror_indices", "read_mirrored",
]
