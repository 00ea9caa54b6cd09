"""Datasets from config sections: one folder, or a weighted mixture of several (synthetic degradations
and real noisy/clean pairs in one training set)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..errors import ConfigError
from .datasets import Augment, DegradedFolder, PairedFolder, SampleKey, as_key, sample_generator

if TYPE_CHECKING:  # the config module imports the training package, which imports this one
    from ..train.config import DatasetSection

Dataset = PairedFolder | DegradedFolder


class MixedDataset(torch.utils.data.Dataset):
    """Draws each sample from one of ``parts`` with probability proportional to ``weights``.

    The part and the image within it come from a generator seeded by the sample key (on a stream of its
    own, so they do not shift the part's crop and noise draws), so a key names one sample for good, as
    exact resume and distributed runs need. An epoch is nominally as long as the parts together
    (each part's ``repeat`` included); the weights, not the part sizes, set how often each part is seen.
    """

    def __init__(self, parts: Sequence[Dataset], weights: Sequence[float], lengths: Sequence[int], seed: int) -> None:
        if not parts or len(parts) != len(weights) or len(parts) != len(lengths):
            raise ConfigError("data: a mixture needs one weight per part")
        if any(not w > 0 for w in weights):
            raise ConfigError(f"data: mixture weights must be positive, got {list(weights)}")
        self.parts, self.seed = list(parts), seed
        self.weights = torch.tensor([float(w) for w in weights], dtype=torch.float64)
        self.length = sum(lengths)

    def __len__(self) -> int:
        return self.length

    def pick(self, key: SampleKey) -> tuple[int, int]:
        """(part, image in part) of a sample key."""
        g = sample_generator(self.seed + 7_919, key.epoch, key.position)
        part = int(torch.multinomial(self.weights, 1, generator=g))
        image = int(torch.randint(0, len(self.parts[part]), (1,), generator=g))
        return part, image

    def __getitem__(self, key: SampleKey | int) -> tuple[torch.Tensor, torch.Tensor]:
        key = as_key(key)
        part, image = self.pick(key)
        return self.parts[part][SampleKey(key.epoch, key.position, image)]


def make_dataset(section: DatasetSection, scale: int, channels: int, seed: int, train: bool) -> Dataset:
    """A dataset from one config section; validation sets are never cropped or augmented.

    A paired section with ``gt`` only reads noisy/clean pairs from one folder by name
    (PolyU's ``<scene>_real`` / ``<scene>_mean``, SIDD's ``NOISY`` / ``GT``).
    """
    augment = Augment(section.patch, section.flip, section.rot90, section.channel_shuffle) if train else Augment()
    if section.kind == "paired":
        if not isinstance(section.gt, str):
            raise ConfigError("data: a paired set takes one gt folder (a list of folders is for kind: degraded)")
        if section.precompute_lq:
            raise ConfigError("data: precompute_lq is for kind: degraded (a paired set's LQ is already on disk)")
        return PairedFolder(section.lq, section.gt, scale, channels, augment, seed, section.cache, section.max_images)
    if section.degradation is None:
        raise ConfigError("data: a degraded set needs a degradation spec, e.g. awgn:0-50 or bicubic:4")
    return DegradedFolder(section.gt, section.degradation, scale, channels, augment, seed, section.cache,
                          section.max_images, section.precompute_lq)


def make_train_set(
    sections: DatasetSection | tuple[DatasetSection, ...], scale: int, channels: int, seed: int
) -> tuple[Dataset | MixedDataset, int]:
    """The training set and the sampler's ``repeat``: one section as it is, several as a weighted mixture."""
    if not isinstance(sections, tuple):
        return make_dataset(sections, scale, channels, seed, train=True), sections.repeat
    patches = {section.patch for section in sections}
    if len(patches) != 1:
        raise ConfigError(f"data.train: the parts of a mixture must share one patch size, got {sorted(map(str, patches))}")
    # Each part gets a seed of its own, so two parts over one folder do not draw the same crops.
    parts = [make_dataset(section, scale, channels, seed + 1_000 * i, train=True) for i, section in enumerate(sections)]
    lengths = [len(part) * section.repeat for part, section in zip(parts, sections)]
    return MixedDataset(parts, [section.weight for section in sections], lengths, seed), 1
