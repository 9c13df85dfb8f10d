"""Paired augmentation, batched in torch on the training device.

Every geometric change (the paper's elastic deformation, rotation, scaling,
flip, shift) is composed into ONE sampling grid, so image, mask and weight map
are resampled once and stay aligned: the image bilinearly, the mask by nearest
neighbour (class ids stay class ids), the weight map bilinearly. Where the warp
reads beyond the patch's source window it mirrors (`padding_mode="reflection"`),
as the paper mirrors image borders. Grey-value changes (blur, contrast,
brightness, gamma, noise) touch the image only.

Random parameters are drawn per sample from `numpy.random.default_rng(seed)`,
the seed coming from `data.PatchDataset`: a patch is a pure function of (run
seed, sample index), so an interrupted run resumes exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from ..config import AugmentConfig
from .windows import center_crop

# Scalar parameters per sample, in draw order; the elastic grid follows them.
SCALARS = ("angle", "scale", "flip", "shift_x", "shift_y", "brightness", "contrast", "gamma", "noise", "blur")


def required_slack(config: AugmentConfig, side: int) -> int:
    """Extra source pixels per side that the warp of a `side`-pixel patch may read.

    The rotated, zoomed-out patch corner plus shift plus 3 std of elastic
    displacement; rarer, farther reads are mirrored by `grid_sample`.
    """
    if not config.enabled:
        return 0
    half = (side - 1) / 2
    corner = half * (math.sqrt(2) if config.rotate else 1.0) * (1 + config.scale)
    return int(math.ceil(corner - half + config.shift + 3 * config.elastic_std))


def sample_params(seeds, config: AugmentConfig) -> dict[str, torch.Tensor]:
    """Per-sample random parameters {name: (N,) tensor, "elastic": (N, 2, g, g) px, "noise_seed": (N,)}."""
    rows, fields, noise_seeds = [], [], []
    g = config.elastic_grid
    for seed in seeds:
        rng = np.random.default_rng(int(seed))
        log_scale, log_gamma = math.log1p(config.scale), math.log1p(config.gamma)
        blur = rng.uniform(0, config.blur)
        rows.append(
            [
                math.radians(rng.uniform(-config.rotate, config.rotate)),
                math.exp(rng.uniform(-log_scale, log_scale)),
                -1.0 if config.flip and rng.random() < 0.5 else 1.0,
                *rng.uniform(-config.shift, config.shift, 2),
                rng.uniform(-config.brightness, config.brightness),
                1 + rng.uniform(-config.contrast, config.contrast),
                math.exp(rng.uniform(-log_gamma, log_gamma)),
                rng.uniform(0, config.noise),
                blur if rng.random() < config.blur_prob else 0.0,
            ]
        )
        fields.append(rng.normal(0, config.elastic_std, (2, g, g)) if config.elastic_std else np.zeros((2, g, g)))
        noise_seeds.append(int(rng.integers(2**62)))
    table = torch.tensor(np.array(rows), dtype=torch.float32)
    params = {name: table[:, i] for i, name in enumerate(SCALARS)}
    params["elastic"] = torch.tensor(np.array(fields), dtype=torch.float32)
    params["noise_seed"] = torch.tensor(noise_seeds, dtype=torch.int64)
    return params


def elastic_field(coarse: torch.Tensor, size: int) -> torch.Tensor:
    """Per-pixel displacement (N, 2, size, size) from coarse grid values (N, 2, g, g), bicubic.

    `align_corners=True` puts the coarse points on the patch corners and
    evenly between, so the field equals the drawn values there (the paper's
    "3 x 3 grid ... bicubic interpolation").
    """
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)


def sampling_grid(params: dict[str, torch.Tensor], size: int, source: int) -> torch.Tensor:
    """`grid_sample` grid (N, size, size, 2) for a `size` patch read from a centred `source` window.

    source point = R(angle) F(flip) p / scale + shift + elastic(p), with p the
    output pixel's position relative to the patch centre, in pixels.
    """
    device = params["angle"].device
    n = params["angle"].shape[0]
    axis = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    x = x * params["flip"].view(n, 1, 1)
    cos, sin = torch.cos(params["angle"]).view(n, 1, 1), torch.sin(params["angle"]).view(n, 1, 1)
    inv_scale = (1 / params["scale"]).view(n, 1, 1)
    field = elastic_field(params["elastic"], size)
    src_x = (cos * x - sin * y) * inv_scale + params["shift_x"].view(n, 1, 1) + field[:, 0]
    src_y = (sin * x + cos * y) * inv_scale + params["shift_y"].view(n, 1, 1) + field[:, 1]
    # align_corners=True: -1 and +1 are the centres of the source window's edge pixels.
    return torch.stack([src_x, src_y], dim=-1) / ((source - 1) / 2)


def augment_batch(
    batch: dict[str, torch.Tensor],
    config: AugmentConfig,
    *,
    input_size: int,
    target_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(image (N, C, in, in), mask (N, out, out), weight (N, out, out) or None) from a PatchDataset batch.

    The batch holds source windows (N, C, S, S), (N, S, S); `input_size` is the
    network input and `target_size` its output (smaller for valid padding: the
    target is the centre of the warped input). With augmentation off this is
    the plain centre crop.
    """
    image, mask, weight = batch["image"], batch["mask"], batch.get("weight")
    if not config.enabled:
        mask_out = center_crop(mask, target_size)
        return center_crop(image, input_size), mask_out, None if weight is None else center_crop(weight, target_size)
    params = {k: v.to(image.device) for k, v in sample_params(batch["seed"].tolist(), config).items()}
    grid = sampling_grid(params, input_size, image.shape[-1])
    inner = center_crop(grid.permute(0, 3, 1, 2), target_size).permute(0, 2, 3, 1)
    warp = dict(padding_mode="reflection", align_corners=True)
    image = F.grid_sample(image, grid, mode="bilinear", **warp)
    mask = F.grid_sample(mask[:, None].float(), inner, mode="nearest", **warp)[:, 0].round().long()
    if weight is not None:
        weight = F.grid_sample(weight[:, None], inner, mode="bilinear", **warp)[:, 0]
    return grey_values(image, params, config), mask, weight


def grey_values(image: torch.Tensor, params: dict[str, torch.Tensor], config: AugmentConfig) -> torch.Tensor:
    """Blur, contrast around the mean, brightness, gamma, then Gaussian noise; per sample."""
    n = image.shape[0]
    per_sample = lambda name: params[name].view(n, 1, 1, 1)  # noqa: E731
    blurred = (params["blur"] > 0).nonzero()[:, 0]
    if len(blurred):  # a sigma-0 kernel is the identity: only the samples drawn for it are convolved
        image = image.index_copy(0, blurred, gaussian_blur(image[blurred], params["blur"][blurred], radius=math.ceil(3 * config.blur)))
    mean = image.mean(dim=(2, 3), keepdim=True)
    image = (image - mean) * per_sample("contrast") + mean + per_sample("brightness")
    if config.gamma:
        low = image.amin(dim=(1, 2, 3), keepdim=True)
        span = image.amax(dim=(1, 2, 3), keepdim=True) - low + 1e-6
        image = ((image - low) / span).clamp(0, 1) ** per_sample("gamma") * span + low
    if config.noise:
        noise = torch.stack([_normal(image.shape[1:], int(s), image.device) for s in params["noise_seed"]])
        image = image + noise * per_sample("noise")
    return image


def _normal(shape, seed: int, device) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(shape, generator=generator, device=device)


def gaussian_blur(image: torch.Tensor, sigmas: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample (sigma 0: unchanged), mirrored borders."""
    n, c, h, w = image.shape
    offsets = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    sig = sigmas.to(image.dtype).clamp(min=1e-3).view(n, 1)
    kernel = torch.exp(-(offsets**2) / (2 * sig**2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n*c, 2r+1)
    x = F.pad(image.reshape(1, n * c, h, w), (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(n * c, 1, -1, 1), groups=n * c)
    x = F.conv2d(x, kernel.view(n * c, 1, 1, -1), groups=n * c)
    return x.view(n, c, h, w)
