"""Training and validation image sets, with randomness that depends only on (seed, epoch, position).

- :class:`PairedFolder`: LQ and GT folders matched by relative path and stem (subfolders allowed); an
  LQ name may carry a scale suffix (``0001x4.png`` pairs with ``0001.png``). Unmatched files are an
  error that lists them.
- :class:`DegradedFolder`: GT only; the LQ is synthesised on the fly by a degradation spec
  (``restorekit.data.degrade.parse_degradation``), after cropping, so only the patch is degraded.

Both return ``(lq, gt)`` float tensors in [0, 1], CHW. Items are requested with a :class:`SampleKey`
(``epoch, position, image``) rather than a bare index: every random choice for that sample (crop,
flips, noise level) comes from a generator seeded by ``(seed, epoch, position)``. The same key gives
the same sample in any worker process, under any world size, and after a resume, which is what makes
resumed and distributed runs reproduce an uninterrupted single-process run exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import ConfigError, ImageError
from ..imageio import READABLE_SUFFIXES, read_tensor


class SampleKey(NamedTuple):
    epoch: int
    position: int  # place in the epoch's global order (distinct even when ``repeat`` revisits an image)
    image: int  # image index in the folder (not ``index``: that would shadow tuple.index)


def sample_generator(seed: int, epoch: int, position: int) -> torch.Generator:
    """A generator for one sample; the constants only spread nearby keys apart."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch * 7_919 + position * 104_729) % (2**63 - 1))
    return g


def list_images(folder: str | Path) -> list[Path]:
    """Images under ``folder``, subfolders included (REDS-style ``000/00000000.png`` trees), sorted by
    relative path so the order is the same on every machine."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: image folder not found")
    files = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in READABLE_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        raise ConfigError(f"{folder}: contains no images ({', '.join(READABLE_SUFFIXES)})")
    return files


def _key(path: Path, root: Path) -> str:
    """Relative path without the suffix: what pairs an LQ file with its GT file."""
    return path.relative_to(root).with_suffix("").as_posix()


def read_image(path: Path, channels: int) -> torch.Tensor:
    """CHW float32 in [0, 1] through ``restorekit.imageio`` (16-bit kept, broken files refused by name).

    ``channels`` 1 gives the ITU-R 601 luma (``imageio.luma``: Pillow's ``L`` on 8-bit), 3 gives RGB.
    """
    return read_tensor(path, channels)


_SCALE_SUFFIX = re.compile(r"(?:[_-]?x\d+)$", re.IGNORECASE)


def pair_files(lq_dir: str | Path, gt_dir: str | Path) -> list[tuple[Path, Path]]:
    """Match LQ to GT files by relative path and stem (any image suffix), tolerating a ``x4``/``_x4``
    suffix on the LQ stem (DIV2K's ``0001x4.png`` pairs with ``0001.png``)."""
    lq_root, gt_root = Path(lq_dir), Path(gt_dir)
    lq_files, gt_files = list_images(lq_root), list_images(gt_root)
    gt_by_key = {_key(p, gt_root): p for p in gt_files}
    pairs: list[tuple[Path, Path]] = []
    unmatched_lq: list[str] = []
    used: set[str] = set()
    for lq in lq_files:
        key = _key(lq, lq_root)
        if key not in gt_by_key:
            key = _SCALE_SUFFIX.sub("", key)
        if key in gt_by_key and key not in used:
            pairs.append((lq, gt_by_key[key]))
            used.add(key)
        else:
            unmatched_lq.append(lq.relative_to(lq_root).as_posix())
    unmatched_gt = [p.relative_to(gt_root).as_posix() for p in gt_files if _key(p, gt_root) not in used]
    if unmatched_lq or unmatched_gt:
        parts = []
        if unmatched_lq:
            more = f" and {len(unmatched_lq) - 10} more" if len(unmatched_lq) > 10 else ""
            parts.append(f"LQ without GT in {lq_dir}: {', '.join(unmatched_lq[:10])}{more}")
        if unmatched_gt:
            more = f" and {len(unmatched_gt) - 10} more" if len(unmatched_gt) > 10 else ""
            parts.append(f"GT without LQ in {gt_dir}: {', '.join(unmatched_gt[:10])}{more}")
        raise ConfigError("unmatched image files; " + "; ".join(parts))
    return pairs


@dataclass(frozen=True)
class Augment:
    patch: int | None = None  # GT crop size; must be a multiple of the scale
    flip: bool = False
    rot90: bool = False
    # Random RGB order, the same for LQ and GT. Only for degradations that treat the channels alike
    # (AWGN, blur, resampling): it multiplies the colour variety of a small colour set.
    channel_shuffle: bool = False


def crop_and_augment(
    lq: torch.Tensor, gt: torch.Tensor, scale: int, augment: Augment, g: torch.Generator, source: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop aligned to the scale grid (LQ pixel (y, x) <-> GT block (s*y, s*x)), then dihedral aug."""
    if augment.patch is not None:
        lq_patch = augment.patch // scale
        height, width = lq.shape[-2:]
        if height < lq_patch or width < lq_patch:
            raise ImageError(f"{source}: LQ {width}x{height} is smaller than the {lq_patch}px training patch")
        top = int(torch.randint(0, height - lq_patch + 1, (1,), generator=g))
        left = int(torch.randint(0, width - lq_patch + 1, (1,), generator=g))
        lq = lq[..., top : top + lq_patch, left : left + lq_patch]
        gt = gt[..., top * scale : (top + lq_patch) * scale, left * scale : (left + lq_patch) * scale]
    # Draw all three bits every time so the stream does not depend on which augmentations are on.
    bits = torch.randint(0, 2, (3,), generator=g).tolist()
    if augment.flip and bits[0]:
        lq, gt = lq.flip(-1), gt.flip(-1)
    if augment.flip and bits[1]:
        lq, gt = lq.flip(-2), gt.flip(-2)
    if augment.rot90 and bits[2]:
        lq, gt = lq.transpose(-1, -2), gt.transpose(-1, -2)
    if augment.channel_shuffle:
        # Drawn last and only when on, so the streams of configs without it are unchanged.
        order = torch.randperm(lq.shape[-3], generator=g)
        if gt.shape[-3] != lq.shape[-3]:
            raise ImageError(f"{source}: channel_shuffle needs LQ and GT with the same channels")
        lq, gt = lq[..., order, :, :], gt[..., order, :, :]
    return lq.contiguous(), gt.contiguous()


class _ImageCache:
    """Decoded images kept in memory when ``cache`` is on (each worker process holds its own copy)."""

    def __init__(self, channels: int, enabled: bool) -> None:
        self.channels = channels
        self.enabled = enabled
        self.images: dict[Path, torch.Tensor] = {}

    def get(self, path: Path) -> torch.Tensor:
        if not self.enabled:
            return read_image(path, self.channels)
        if path not in self.images:
            self.images[path] = read_image(path, self.channels)
        return self.images[path]


# Name tokens of noisy/clean pairs kept in one folder: PolyU (``Canon80D_8_8_3200_ball_1_real.JPG`` /
# ``..._mean.JPG``) and SIDD (``0001_NOISY_SRGB_010.PNG`` / ``0001_GT_SRGB_010.PNG``).
NOISY_TOKENS = {"real": "mean", "noisy": "gt"}


def pair_in_folder(folder: str | Path) -> list[tuple[Path, Path]]:
    """(noisy, clean) files of one folder matched by name: the stem's ``_real``/``_NOISY`` part replaced
    by ``_mean``/``_GT`` (any case, any image suffix). Unmatched files are an error that lists them."""
    root = Path(folder)
    files = list_images(root)
    by_key = {_key(p, root).lower(): p for p in files}
    pairs: list[tuple[Path, Path]] = []
    used: set[Path] = set()
    for path in files:
        parts = _key(path, root).split("_")
        for i, part in enumerate(parts):
            clean_token = NOISY_TOKENS.get(part.lower())
            if clean_token is None:
                continue
            clean_key = "_".join([*parts[:i], clean_token, *parts[i + 1:]]).lower()
            if clean_key in by_key:
                pairs.append((path, by_key[clean_key]))
                used.update((path, by_key[clean_key]))
                break
    unmatched = [p.relative_to(root).as_posix() for p in files if p not in used]
    if not pairs:
        raise ConfigError(
            f"{root}: no noisy/clean pairs (expected names like scene_real.png + scene_mean.png or "
            "0001_NOISY_x.png + 0001_GT_x.png, or give separate lq and gt folders)"
        )
    if unmatched:
        more = f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else ""
        raise ConfigError(f"{root}: files without a noisy/clean partner: {', '.join(unmatched[:10])}{more}")
    return pairs


class PairedFolder(torch.utils.data.Dataset):
    """LQ/GT folders matched by name, or noisy/clean pairs in one folder (``lq_dir=None``, see
    :func:`pair_in_folder`). With ``augment.patch`` the pair is randomly cropped."""

    def __init__(
        self,
        lq_dir: str | Path | None,
        gt_dir: str | Path,
        scale: int,
        channels: int = 3,
        augment: Augment = Augment(),
        seed: int = 0,
        cache: bool = True,
        max_images: int | None = None,
    ) -> None:
        _check_patch(augment, scale)
        pairs = pair_in_folder(gt_dir) if lq_dir is None else pair_files(lq_dir, gt_dir)
        self.pairs = pairs[:max_images]
        self.scale, self.augment, self.seed = scale, augment, seed
        self.cache = _ImageCache(channels, cache)

    def __len__(self) -> int:
        return len(self.pairs)

    def name(self, index: int) -> str:
        return self.pairs[index][1].stem

    def __getitem__(self, key: SampleKey | int) -> tuple[torch.Tensor, torch.Tensor]:
        key = as_key(key)
        lq_path, gt_path = self.pairs[key.image]
        lq, gt = self.cache.get(lq_path), self.cache.get(gt_path)
        s = self.scale
        if gt.shape[-2] < lq.shape[-2] * s or gt.shape[-1] < lq.shape[-1] * s:
            raise ImageError(
                f"{gt_path}: GT {gt.shape[-1]}x{gt.shape[-2]} is smaller than scale {s} x "
                f"LQ {lq_path.name} {lq.shape[-1]}x{lq.shape[-2]}"
            )
        gt = gt[..., : lq.shape[-2] * s, : lq.shape[-1] * s]  # mod-crop: GT datasets are often not multiples
        return crop_and_augment(lq, gt, s, self.augment, sample_generator(self.seed, key.epoch, key.position), str(lq_path))


class DegradedFolder(torch.utils.data.Dataset):
    """GT folder(s); the LQ is ``degradation(gt_crop)``. The degradation's scale must match the model's.

    With ``precompute_lq`` the degradation runs once on each whole (mod-cropped) image and patches are
    cropped from the cached pair on the scale grid, which is how precomputed LR folders such as DIV2K's
    ``LR_bicubic`` are made, and several times faster for resampling or JPEG. It needs a deterministic
    degradation, else every epoch would reuse one noise draw.
    """

    def __init__(
        self,
        gt_dirs: str | Path | Sequence[str | Path],
        degradation: str,
        scale: int,
        channels: int = 3,
        augment: Augment = Augment(),
        seed: int = 0,
        cache: bool = True,
        max_images: int | None = None,
        precompute_lq: bool = False,
    ) -> None:
        from .degrade import parse_degradation

        _check_patch(augment, scale)
        self.degradation = parse_degradation(degradation)
        if self.degradation.scale != scale:
            raise ConfigError(
                f"degradation {degradation!r} downscales by {self.degradation.scale} but the model's scale is {scale}"
            )
        if precompute_lq and not self.degradation.deterministic:
            raise ConfigError(
                f"precompute_lq needs a deterministic degradation; {degradation!r} draws noise or a random "
                "level per sample (drop precompute_lq or fix the level)"
            )
        folders = [gt_dirs] if isinstance(gt_dirs, (str, Path)) else list(gt_dirs)
        if not folders:
            raise ConfigError("data: a degraded set needs at least one gt folder")
        self.files = [path for folder in folders for path in list_images(folder)][:max_images]
        self.scale, self.augment, self.seed = scale, augment, seed
        self.cache = _ImageCache(channels, cache)
        self.precompute_lq = precompute_lq
        self.lq_cache: dict[Path, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return self.files[index].stem

    def _whole_pair(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """(LQ, GT) of a whole mod-cropped image, the LQ degraded once and kept in memory."""
        s = self.scale
        gt = self.cache.get(path)
        gt = gt[..., : gt.shape[-2] // s * s, : gt.shape[-1] // s * s]
        if path not in self.lq_cache:
            self.lq_cache[path] = self.degradation(gt, None)
        return self.lq_cache[path], gt

    def __getitem__(self, key: SampleKey | int) -> tuple[torch.Tensor, torch.Tensor]:
        key = as_key(key)
        path = self.files[key.image]
        g = sample_generator(self.seed, key.epoch, key.position)
        s = self.scale
        if self.precompute_lq:
            lq, gt = self._whole_pair(path)
            return crop_and_augment(lq, gt, s, self.augment, g, str(path))
        gt = self.cache.get(path)
        gt = gt[..., : gt.shape[-2] // s * s, : gt.shape[-1] // s * s]
        if self.augment.patch is not None:
            # Crop the GT first (on the scale grid) so only the patch is degraded.
            lq_grid = gt[..., ::s, ::s]
            _, gt = crop_and_augment(lq_grid, gt, s, Augment(self.augment.patch), g, str(path))
        lq = self.degradation(gt, g)
        return crop_and_augment(lq, gt, s, replace(self.augment, patch=None), g, str(path))


def _check_patch(augment: Augment, scale: int) -> None:
    if augment.patch is not None and (augment.patch <= 0 or augment.patch % scale):
        raise ConfigError(f"data patch {augment.patch} must be a positive multiple of the scale {scale}")


def as_key(key: SampleKey | int) -> SampleKey:
    if isinstance(key, (int, np.integer)):
        return SampleKey(0, int(key), int(key))
    return SampleKey(*key)


class EpochBatchSampler(torch.utils.data.Sampler[list[SampleKey]]):
    """Batches of :class:`SampleKey` for one process of a (possibly distributed) run.

    Each epoch is a permutation of ``len(dataset) * repeat`` positions drawn from ``(seed, epoch)``;
    it is cut into GLOBAL batches of ``batch_size * world_size`` and process ``rank`` takes its slice
    of each, so the union over ranks at every step is exactly the single-process batch of the same
    global size. The last incomplete global batch is dropped. ``start_batch`` skips batches already
    trained in the epoch (resume).
    """

    def __init__(
        self, num_items: int, batch_size: int, seed: int, repeat: int = 1, rank: int = 0, world_size: int = 1
    ) -> None:
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.repeat, self.rank, self.world_size = repeat, rank, world_size
        self.epoch, self.start_batch = 0, 0
        if len(self) == 0:
            raise ConfigError(
                f"dataset has {num_items * repeat} samples per epoch (x{repeat} repeat), fewer than one global "
                f"batch of {batch_size * world_size}; lower data.batch_size or raise data.train.repeat"
            )

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        """Batches per full epoch."""
        return self.num_items * self.repeat // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        g = torch.Generator()
        g.manual_seed(self.seed * 65_537 + self.epoch)
        total = self.num_items * self.repeat
        order = torch.randperm(total, generator=g).tolist()
        global_batch = self.batch_size * self.world_size
        for b in range(self.start_batch, len(self)):
            lo = b * global_batch + self.rank * self.batch_size
            yield [SampleKey(self.epoch, p, order[p] % self.num_items) for p in range(lo, lo + self.batch_size)]
