"""Random training patches, each a pure function of (seed, sample index)."""

from __future__ import annotations

import numpy as np

from .examples import Example


class PatchDataset:
    """Random training patches, each a pure function of (seed, sample index).

    Sample `i` belongs to epoch `i // samples_per_epoch`; each epoch visits the
    images in a seeded shuffled order, equally often. A patch is a window of
    side `target + 2 * (margin + slack)` around a target window of side
    `target` lying inside the image (or centred on a foreground pixel, for a
    `fg_oversample` share): `margin` is the valid-padding context, `slack` the
    room the augmentation's warp may read from. Borders are mirrored.
    Items: {"image" (C, S, S) float32, "mask" (S, S) int64, ["weight" (S, S)
    float32,] "seed" int64 for the augmentation}. Because nothing depends on
    what was drawn before, resuming at sample `i` repeats a run exactly.
    Examples are read through their methods (`crop`, `foreground`), so an image
    read window by window (`lazy.LazyExample`) gives the same patches.
    """

    FG_POSITIONS = 100_000  # foreground pixels remembered per image for oversampling

    def __init__(
        self,
        examples: list[Example],
        *,
        target: int,
        margin: int = 0,
        slack: int = 0,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        fg_oversample: float = 0.0,
        ignore_index: int | None = None,
    ):
        self.examples, self.target, self.margin, self.slack = examples, target, margin, slack
        self.seed, self.fg_oversample = seed, fg_oversample
        self.samples_per_epoch = samples_per_epoch or self.covering_count(examples, target)
        self._foreground = [e.foreground(ignore_index, self.FG_POSITIONS) for e in examples] if fg_oversample else None
        self._order: tuple[int, np.ndarray] | None = None

    @staticmethod
    def covering_count(examples: list[Example], target: int) -> int:
        """Patches needed to cover every training image once."""
        return sum(-(-h // target) * -(-w // target) for h, w in (e.shape for e in examples))

    @property
    def side(self) -> int:
        return self.target + 2 * (self.margin + self.slack)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def image_of(self, index: int) -> int:
        """Which image sample `index` is drawn from (a seeded shuffle per epoch)."""
        epoch, offset = divmod(index, self.samples_per_epoch)
        if self._order is None or self._order[0] != epoch:
            cycle = np.resize(np.arange(len(self.examples)), self.samples_per_epoch)
            self._order = (epoch, np.random.default_rng([self.seed, 0, epoch]).permutation(cycle))
        return int(self._order[1][offset])

    def __getitem__(self, index: int) -> dict:
        import torch

        example = self.examples[self.image_of(index)]
        rng = np.random.default_rng([self.seed, 1, index])
        top, left = self._target_corner(example, rng, self._foreground and self._foreground[self.image_of(index)])
        reach = self.margin + self.slack
        image, classes, weight = example.crop(top - reach, left - reach, self.side, self.side)
        item = {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(classes.astype(np.int64)),
            "seed": int(rng.integers(2**62)),
        }
        if weight is not None:
            item["weight"] = torch.from_numpy(weight)
        return item

    def _target_corner(self, example: Example, rng: np.random.Generator, foreground) -> tuple[int, int]:
        """Top-left of the target window: uniform inside the image, or around a foreground pixel."""
        corner = []
        centre = None
        if foreground is not None and len(foreground) and rng.random() < self.fg_oversample:
            centre = np.unravel_index(foreground[rng.integers(len(foreground))], example.shape)
        for axis, size in enumerate(example.shape):
            room = size - self.target
            if room < 0:  # image smaller than the patch: centre it, mirror the rest
                corner.append(room // 2)
            elif centre is not None:
                corner.append(int(np.clip(centre[axis] - self.target // 2, 0, room)))
            else:
                corner.append(int(rng.integers(room + 1)))
        return corner[0], corner[1]
