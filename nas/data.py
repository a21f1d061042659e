"""Small image-classification data sets for trained evaluation, prepared once and held in memory.

Two sources:

- `"digits"`: scikit-learn's 8x8 handwritten digits (1,797 images, 10
  classes, shipped inside the package: nothing is downloaded). Pixels are
  scaled to [0, 1], upsampled bilinearly to the network's resolution and the
  grey channel is repeated to the space's input channels.
- a directory in ImageFolder layout: one subfolder per class (sorted names
  are the class order), each holding image files. Images are read with PIL,
  converted to RGB (or to grey for 1 input channel) and resized bilinearly to
  the resolution. Files with other extensions and hidden files are ignored. An
  image file that PIL cannot read is skipped, and one `DataWarning` says how
  many were skipped and names the first. Every class needs at least two
  readable images (one for training, one for testing).

Both are normalised per channel with the training split's mean and standard
deviation. The train/test split is fixed (seed 0, not the training seed, so
that every candidate is scored on the same images) and stratified: each
class puts round(20%) of its images, at least one, into the test split.
For digits that is 1,438 training and 359 test images. Everything is held in
memory: this is meant for small data sets, not ImageNet.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.errors import DataError, DataWarning

DIGITS = "digits"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
TEST_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass(frozen=True, kw_only=True, eq=False)
class Dataset:
    """A prepared, normalised data set: float32 images N x C x R x R and int64 labels."""

    source: str  # "digits" or the directory it was read from
    classes: tuple[str, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    skipped: int = 0  # unreadable image files left out

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def resolution(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices (each sorted): per class, round(fraction x count) test images, at least 1."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = max(1, int(round(len(idx) * test_fraction)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _finish(source: str, classes: tuple[str, ...], x: torch.Tensor, y: np.ndarray, skipped: int = 0) -> Dataset:
    """Split, then normalise both splits with the training split's per-channel mean and std."""
    tr, te = stratified_split(y)
    tr_t, te_t = torch.from_numpy(tr), torch.from_numpy(te)
    x_train, x_test = x[tr_t], x[te_t]
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    labels = torch.from_numpy(y.astype(np.int64))
    return Dataset(source=source, classes=classes, x_train=((x_train - mean) / std).contiguous(),
                   y_train=labels[tr_t], x_test=((x_test - mean) / std).contiguous(), y_test=labels[te_t],
                   skipped=skipped)


def load_digits(resolution: int, channels: int) -> Dataset:
    """scikit-learn's 8x8 digits, upsampled to `resolution`, grey repeated to `channels`."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return _finish(DIGITS, tuple(str(c) for c in range(10)), x.expand(-1, channels, -1, -1), d.target)


def _read_image(path: Path, resolution: int, channels: int) -> np.ndarray | None:
    """H x W x C uint8, or None when PIL cannot read the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            im = im.resize((resolution, resolution), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        return None
    return a[:, :, None] if a.ndim == 2 else a


def load_image_folder(root: str | os.PathLike, resolution: int, channels: int) -> Dataset:
    """An ImageFolder-style directory (one subfolder of images per class); see the module docstring."""
    root = Path(root)
    allowed = "'digits' or a directory with one subfolder of images per class"
    if not root.exists():
        raise DataError(f"{root}: no such directory; the data must be {allowed}")
    if not root.is_dir():
        raise DataError(f"{root}: not a directory; the data must be {allowed}")
    if channels not in (1, 3):
        raise DataError(f"{root}: images can feed 1 (grey) or 3 (RGB) input channels; the space has {channels}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {f.name: sorted(p for p in f.iterdir() if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() in IMAGE_EXTENSIONS) for f in folders}
    if not any(files.values()):
        raise DataError(f"{root}: no images found; expected one subfolder per class holding "
                        f"{', '.join(IMAGE_EXTENSIONS)} files")
    images: list[np.ndarray] = []
    labels: list[int] = []
    bad: list[Path] = []
    classes = tuple(files)
    for label, name in enumerate(classes):
        count = 0
        for path in files[name]:
            a = _read_image(path, resolution, channels)
            if a is None:
                bad.append(path)
                continue
            images.append(a)
            labels.append(label)
            count += 1
        if count < 2:
            more = f" ({len(files[name]) - count} unreadable skipped)" if count < len(files[name]) else ""
            raise DataError(f"{root / name}: {count} readable image{'s' if count != 1 else ''}{more}; "
                            f"every class folder needs at least 2 (one to train, one to test)")
    if len(classes) < 2:
        raise DataError(f"{root}: 1 class folder with images ({classes[0]}); at least 2 classes are needed")
    if bad:
        warnings.warn(f"{root}: skipped {len(bad)} unreadable image file{'s' if len(bad) != 1 else ''} "
                      f"(first: {bad[0]})", DataWarning, stacklevel=2)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return _finish(str(root), classes, x, np.asarray(labels), skipped=len(bad))


_CACHE: dict[tuple[str, int, int], Dataset] = {}


def prepared(data: str | os.PathLike, resolution: int, channels: int) -> Dataset:
    """The data set at this resolution and channel count, prepared once per process.

    `data` is "digits" (that word always means scikit-learn's digits; write
    ./digits for a folder of that name) or an image-folder path. Folders are
    keyed by their resolved path; a folder edited after its first use is not
    re-read until `clear_cache()`.
    """
    source = DIGITS if str(data) == DIGITS else str(Path(data).resolve())
    key = (source, resolution, channels)
    if key not in _CACHE:
        if source == DIGITS:
            _CACHE[key] = load_digits(resolution, channels)
        else:
            _CACHE[key] = load_image_folder(data, resolution, channels)
    return _CACHE[key]


def clear_cache() -> None:
    """Forget every prepared data set."""
    _CACHE.clear()
