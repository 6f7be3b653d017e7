"""Datasets for short training: the embedded default, ``.npz`` files and image folders.

A dataset spec (``--data``) is one of

* ``digits`` (default): scikit-learn's bundled handwritten digits (``load_digits``:
  1797 grey 8x8 images, 10 classes, shipped inside the scikit-learn wheel, so
  nothing is downloaded at run time). UCI "Optical Recognition of Handwritten
  Digits" (Alpaydin & Kaynak, 1998), CC BY 4.0.
* ``PATH.npz`` with arrays ``x`` (``N,H,W`` grey, ``N,C,H,W`` or ``N,H,W,C`` with
  ``C`` in 1 or 3) and ``y`` (``N`` integer labels ``0..K-1``);
* a folder with one sub-folder of images per class (class ``i`` = the ``i``-th
  sub-folder in sorted order; any format Pillow reads).

Every dataset is resized once (bilinear) to the architecture's input
``(C, H, W)``: a grey dataset is replicated to 3 channels when the network takes 3.
Pixels are scaled to ``[0, 1]`` (integer arrays by their dtype's range, digits by
16) and standardised per channel with the *training split's* mean and std.

**Split.** ``split(n, seed, val, heldout)`` is a seeded, stratified permutation:
train / validation (learning curves, early stopping) / held-out (the accuracy a
trained artifact reports, never seen during training or selection). The split
(seed, fractions, counts, a digest of the held-out indices) is recorded in the run
config by ``Data.config()``.

**Speed.** Loading, resizing and standardising happen once per (spec, input
shape, split) and are cached in the process (``prepare_data``), so a search
training hundreds of candidates pays it once; the tensors live in memory (the
digits at 3x32x32 are 22 MB as float32).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cosearch.errors import CosearchError

if TYPE_CHECKING:
    import torch

DEFAULT_DATASET = "digits"
EMBEDDED = ("digits",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


@dataclass(frozen=True)
class RawDataset:
    """Images as loaded (before resizing): ``x`` float32 ``N,C,H,W`` in [0, 1], ``y`` int64."""

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitIndices:
    train: np.ndarray
    val: np.ndarray
    heldout: np.ndarray
    seed: int
    val_fraction: float
    heldout_fraction: float

    def config(self) -> dict[str, Any]:
        digest = hashlib.sha256(np.sort(self.heldout).astype(np.int64).tobytes()).hexdigest()[:16]
        return {"seed": self.seed, "val_fraction": self.val_fraction, "heldout_fraction": self.heldout_fraction,
                "train": int(len(self.train)), "val": int(len(self.val)), "heldout": int(len(self.heldout)),
                "stratified": True, "heldout_digest": digest}


@dataclass(frozen=True)
class Data:
    """A dataset resized to one input shape and split; tensors ready for training."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    x_train: "torch.Tensor"
    y_train: "torch.Tensor"
    x_val: "torch.Tensor"
    y_val: "torch.Tensor"
    x_heldout: "torch.Tensor"
    y_heldout: "torch.Tensor"
    split: SplitIndices
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Identity of (dataset, input shape, split) for per-dataset persistent files."""
        h = hashlib.sha256(repr((self.name, self.source.get("digest"), self.input_shape, self.split.config())).encode())
        return h.hexdigest()[:12]

    def config(self) -> dict[str, Any]:
        return {"dataset": self.name, "source": self.source, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "split": self.split.config(),
                "normalise": {"mean": list(self.mean), "std": list(self.std)}, "fingerprint": self.fingerprint()}


# --------------------------------------------------------------------------- loading
def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _to_unit(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype == np.bool_:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        hi = 255.0 if info.max >= 255 else float(info.max)
        if x.size and (x.min() < 0 or x.max() > hi):
            hi = float(max(abs(int(x.min())), int(x.max()), 1))
        return x.astype(np.float32) / hi
    if not np.issubdtype(x.dtype, np.floating):
        raise CosearchError(f"{what}: x has dtype {x.dtype}; accepted: integer, bool or float pixels")
    x = x.astype(np.float32)
    if x.size and not np.isfinite(x).all():
        raise CosearchError(f"{what}: x holds NaN or infinite values")
    return x


def _nchw(x: np.ndarray, what: str) -> np.ndarray:
    """``N,H,W`` / ``N,C,H,W`` / ``N,H,W,C`` (C in 1, 3) -> ``N,C,H,W``."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] <= 4:  # channels first (checked against the network's channels later)
            return x
        if x.shape[3] <= 4:
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        raise CosearchError(f"{what}: x has shape {tuple(x.shape)}; accepted: N,H,W or N,C,H,W / N,H,W,C with C <= 4")
    raise CosearchError(f"{what}: x has shape {tuple(x.shape)}; accepted: N,H,W or N,C,H,W / N,H,W,C with C 1 or 3")


def _labels(y: np.ndarray, n: int, what: str) -> tuple[np.ndarray, int]:
    if y.ndim != 1:
        raise CosearchError(f"{what}: y has shape {tuple(y.shape)}; accepted: one integer label per image (shape ({n},))")
    if len(y) != n:
        raise CosearchError(f"{what}: x holds {n} images but y holds {len(y)} labels; accepted: one label per image")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise CosearchError(f"{what}: y has dtype {y.dtype}; accepted: integer class labels 0..K-1")
    y = y.astype(np.int64)
    if n and y.min() < 0:
        raise CosearchError(f"{what}: y holds the negative label {int(y.min())}; accepted: class labels 0..K-1")
    return y, (int(y.max()) + 1 if n else 0)


def load_digits() -> RawDataset:
    try:
        from sklearn.datasets import load_digits as sk_load
    except ImportError:
        raise CosearchError("the embedded dataset 'digits' needs scikit-learn (pip install scikit-learn); "
                            "or give --data PATH.npz / an image folder") from None
    d = sk_load()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    return RawDataset("digits", x, y, 10, {"kind": "embedded", "name": "digits", "package": "scikit-learn",
                                           "original_shape": [1, 8, 8], "n": int(len(y)), "digest": "sklearn-digits"})


def load_npz(path: Path) -> RawDataset:
    what = f"dataset {str(path)!r}"
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            if not {"x", "y"} <= keys:
                raise CosearchError(f"{what} lacks {', '.join(sorted({'x', 'y'} - keys))}; "
                                    f"accepted: an .npz with arrays x (images) and y (labels), got {sorted(keys)}")
            x, y = f["x"], f["y"]
    except CosearchError:
        raise
    except Exception as e:  # noqa: BLE001 - zip / format / pickle errors: one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CosearchError(f"{what} is not a readable .npz ({first}); accepted: np.savez(PATH, x=..., y=...)") from None
    x = _nchw(_to_unit(np.asarray(x), what), what)
    if len(x) == 0:
        raise CosearchError(f"{what} holds no images")
    y, k = _labels(np.asarray(y), len(x), what)
    return RawDataset(path.stem, x, y, k, {"kind": "npz", "path": str(path.resolve()), "original_shape": list(x.shape[1:]),
                                           "n": int(len(y)), "digest": _file_digest(path)})


def load_folder(path: Path, channels: int, size: tuple[int, int]) -> RawDataset:
    """One sub-folder per class; images resized with Pillow at load (bilinear)."""
    from PIL import Image, UnidentifiedImageError

    what = f"dataset folder {str(path)!r}"
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise CosearchError(f"{what} has no class sub-folders; accepted: one sub-folder of images per class")
    xs, ys = [], []
    h = hashlib.sha256()
    mode = "RGB" if channels == 3 else "L"
    for ci, c in enumerate(classes):
        files = sorted(p for p in (path / c).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CosearchError(f"{what}: class folder {c!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert(mode).resize((size[1], size[0]), Image.BILINEAR)
                    a = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as e:
                raise CosearchError(f"{what}: {str(f)!r} is not a readable image ({type(e).__name__})") from None
            xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
            ys.append(ci)
            st = f.stat()
            h.update(f"{c}/{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    x = np.stack(xs).astype(np.float32)
    return RawDataset(path.name, x, np.asarray(ys, np.int64), len(classes),
                      {"kind": "folder", "path": str(path.resolve()), "classes": classes, "n": len(ys),
                       "original_shape": "per image (resized at load)", "digest": h.hexdigest()[:16]})


def check_spec(spec: str | None) -> str:
    """Cheap validation of a ``--data`` value before any work (exists, right kind)."""
    spec = DEFAULT_DATASET if spec is None else str(spec)
    if spec in EMBEDDED:
        return spec
    p = Path(spec)
    if not p.exists():
        raise CosearchError(f"dataset {spec!r} does not exist; accepted: {', '.join(EMBEDDED)}, PATH.npz, "
                            "or a folder with one sub-folder of images per class")
    if p.is_file() and p.suffix.lower() != ".npz":
        raise CosearchError(f"dataset file {spec!r} is not an .npz; accepted: {', '.join(EMBEDDED)}, PATH.npz, "
                            "or a folder with one sub-folder of images per class")
    if not os.access(p, os.R_OK):
        raise CosearchError(f"dataset {spec!r} cannot be read")
    return spec


def load_raw(spec: str | None, *, channels: int = 3, size: tuple[int, int] = (32, 32)) -> RawDataset:
    spec = check_spec(spec)
    if spec == "digits":
        return load_digits()
    p = Path(spec)
    return load_folder(p, channels, size) if p.is_dir() else load_npz(p)


# --------------------------------------------------------------------------- split / resize
def split(y: np.ndarray, *, seed: int = 0, val_fraction: float = 0.15, heldout_fraction: float = 0.15) -> SplitIndices:
    """Seeded stratified split: per class, a permutation cut into held-out / val / train."""
    for name, v in (("val_fraction", val_fraction), ("heldout_fraction", heldout_fraction)):
        if not 0 < v < 1:
            raise CosearchError(f"{name} must lie in (0, 1), got {v!r}")
    if val_fraction + heldout_fraction >= 1:
        raise CosearchError(f"val_fraction + heldout_fraction must be < 1, got {val_fraction + heldout_fraction!r}")
    rng = np.random.default_rng(seed)
    tr, va, ho = [], [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_ho = int(round(len(idx) * heldout_fraction))
        n_va = int(round(len(idx) * val_fraction))
        ho.append(idx[:n_ho])
        va.append(idx[n_ho:n_ho + n_va])
        tr.append(idx[n_ho + n_va:])
    out = [np.sort(np.concatenate(a)).astype(np.int64) for a in (tr, va, ho)]
    for name, a in zip(("train", "validation", "held-out"), out):
        if len(a) == 0:
            raise CosearchError(f"dataset of {len(y)} images leaves the {name} split empty; give more images")
    return SplitIndices(out[0], out[1], out[2], int(seed), float(val_fraction), float(heldout_fraction))


def resize(x: np.ndarray, shape: tuple[int, int, int], what: str = "dataset") -> np.ndarray:
    """``N,c,h,w`` -> ``N,C,H,W`` (bilinear; grey replicated to 3 channels)."""
    import torch
    import torch.nn.functional as F

    C, H, W = shape
    c = x.shape[1]
    if c != C and not (c == 1 and C == 3):
        raise CosearchError(f"{what} has {c}-channel images but the architecture takes {C} channels; "
                            f"accepted: {C} channels" + (" or grey (1 channel, replicated)" if C == 3 else ""))
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.shape[2:] != (H, W):
        t = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)
    if c == 1 and C == 3:
        t = t.expand(-1, 3, -1, -1)
    return t.contiguous().numpy()


def _subset(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """A seeded stratified subset of ``limit`` indices (classes in proportion)."""
    rng = np.random.default_rng(seed + 7919)
    order = rng.permutation(len(y))
    # round-robin over classes in permutation order keeps the class mix
    by_class = [order[y[order] == c] for c in np.unique(y)]
    keep: list[int] = []
    i = 0
    while len(keep) < limit:
        for idx in by_class:
            if i < len(idx) and len(keep) < limit:
                keep.append(int(idx[i]))
        i += 1
    return np.sort(np.asarray(keep, np.int64))


_CACHE: dict[tuple, Data] = {}
_CACHE_MAX = 4


def prepare_data(spec: str | None, input_shape: tuple[int, ...], num_classes: int, *, seed: int = 0,
                 val_fraction: float = 0.15, heldout_fraction: float = 0.15, limit: int | None = None) -> Data:
    """Load, check against the network (channels, classes), resize, split, standardise; cached.

    ``input_shape``: the network's ``(C, H, W)`` (or ``(1, C, H, W)``). ``limit``: use a
    seeded stratified subset of at most ``limit`` images (quick runs, tests)."""
    import torch

    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3:
        raise CosearchError(f"the architecture takes input {tuple(input_shape)}; training needs an image input (C, H, W)")
    spec = check_spec(spec)
    p = Path(spec)
    stamp = (p.stat().st_mtime_ns, p.stat().st_size) if spec not in EMBEDDED else None
    key = (spec, stamp, shape, int(num_classes), int(seed), float(val_fraction), float(heldout_fraction), limit)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    raw = load_raw(spec, channels=shape[0], size=shape[1:])
    what = f"dataset {raw.name!r}"
    if raw.num_classes > num_classes:
        raise CosearchError(f"{what} has labels 0..{raw.num_classes - 1} ({raw.num_classes} classes) but the network "
                            f"has {num_classes} outputs; accepted: labels 0..{num_classes - 1} (or a space with "
                            f"num_classes={raw.num_classes})")
    x, y = raw.x, raw.y
    source = dict(raw.source)
    if limit is not None:
        if limit < 3:
            raise CosearchError(f"limit must be >= 3 images, got {limit}")
        if limit < len(y):
            keep = _subset(y, limit, seed)
            x, y = x[keep], y[keep]
            source["limit"] = int(limit)
    sp = split(y, seed=seed, val_fraction=val_fraction, heldout_fraction=heldout_fraction)
    xr = resize(x, shape, what)
    tr = xr[sp.train]
    mean = tr.mean(axis=(0, 2, 3))
    std = tr.std(axis=(0, 2, 3))
    std = np.where(std > 1e-6, std, 1.0)
    xn = ((xr - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    xt, yt = torch.from_numpy(xn), torch.from_numpy(y)

    def part(idx):
        i = torch.from_numpy(idx)
        return xt[i].contiguous(), yt[i].contiguous()

    (a, b), (c, d), (e, f) = part(sp.train), part(sp.val), part(sp.heldout)
    data = Data(raw.name, shape, int(num_classes), a, b, c, d, e, f, sp,
                tuple(float(v) for v in mean), tuple(float(v) for v in std), source)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = data
    return data


__all__ = ["DEFAULT_DATASET", "Data", "RawDataset", "SplitIndices", "check_spec", "load_raw", "prepare_data",
           "resize", "split"]
