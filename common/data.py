"""Named data sets with one call, held on the training device as tensors.

``load_dataset(name, ...)`` returns a :class:`DataBundle` whose images are float32 ``(N, C, H, W)``
tensors (already normalised) and whose labels are int64, both on ``device``. The sets used in this
study are small enough to live in (GPU) memory, so batching and augmentation happen on tensors
(airbench style): :func:`iterate_batches` shuffles with a ``torch.Generator`` and applies
random-crop + horizontal-flip without any per-sample Python.

Names:
    ``digits``        scikit-learn's 8x8 digits (1x8x8, embedded, no download; default of quick presets).
    ``mnist``, ``fashion_mnist``  1x28x28 from torchvision's ``<data_dir>/{MNIST,FashionMNIST}/raw``.
    ``cifar10``       3x32x32 from torchvision's ``<data_dir>/cifar-10-batches-py``.
    ``cifar10_jpeg``  our JPEG q75 copy of CIFAR-10 (``<data_dir>/cifar10-jpeg/CIFAR-10-images-jpeg.tar.gz``),
                      labelled "CIFAR-10 (JPEG q75)" wherever its numbers appear.
    ``imagefolder:<root>``  any ImageFolder root with ``train/`` and ``test/``.
    ``synthetic``     deterministic separable data for tests (see :func:`make_synthetic`).

The data dir is ``data_dir``, else ``$NNQ_DATA_DIR``, else ``./data``. Decoded image folders are cached in
``$NNQ_CACHE_DIR`` (else ``~/.cache/nnq``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.errors import NnqError

KNOWN_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar10_jpeg", "imagefolder:<root>", "synthetic")
NORMALIZE_MODES = ("default", "imagenet", "none")
AUGMENT_MODES = ("none", "crop_flip")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Per-data-set statistics of the training pixels in [0, 1] (torchvision reference scripts' values).
_DEFAULT_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR10_JPEG_TAR = Path("cifar10-jpeg") / "CIFAR-10-images-jpeg.tar.gz"
_DOWNLOAD_TIMEOUT_S = 10.0


@dataclass
class DataBundle:
    """A data set held as tensors on one device.

    Attributes:
        name: The name passed to :func:`load_dataset`.
        label: Human-readable label for tables and figures (e.g. "CIFAR-10 (JPEG q75)").
        x_train: float32 ``(N, C, H, W)`` normalised training images.
        y_train: int64 ``(N,)`` training labels.
        x_test: float32 ``(M, C, H, W)`` normalised test images.
        y_test: int64 ``(M,)`` test labels.
        num_classes: Number of classes.
        input_shape: ``(C, H, W)``.
        augment: Default training augmentation for this set: "none" or "crop_flip".
    """

    name: str
    label: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    augment: str = "none"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data dir: ``data_dir``, else ``$NNQ_DATA_DIR``, else ``./data``."""
    return Path(data_dir or os.environ.get("NNQ_DATA_DIR") or "data").expanduser()


def find_weights(path: str | os.PathLike, weights_dir: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None) -> Path:
    """A pretrained-weights file: ``path`` as given if it exists, else under ``weights_dir``, ``$NNQ_WEIGHTS_DIR``
    or ``<data dir>/../weights`` (the study's shared layout), in that order.

    Raises:
        NnqError: found nowhere (the message says where it looked and how to point at it).
    """
    p = Path(path).expanduser()
    if p.is_file():
        return p
    roots = [weights_dir, os.environ.get("NNQ_WEIGHTS_DIR"), data_root(data_dir) / ".." / "weights"]
    for root in filter(None, roots):
        if (Path(root) / p).is_file():
            return Path(root) / p
    raise NnqError(f"weights file {path} not found as given nor under {', '.join(str(r) for r in filter(None, roots))}; "
                   "pass --weights-dir DIR (or set NNQ_WEIGHTS_DIR) to the folder holding it")


def cache_root() -> Path:
    """The decode cache: ``$NNQ_CACHE_DIR``, else ``~/.cache/nnq``."""
    return Path(os.environ.get("NNQ_CACHE_DIR") or Path.home() / ".cache" / "nnq").expanduser()


def _download_allowed(download: bool | None) -> bool:
    if download is None:
        return os.environ.get("NNQ_OFFLINE", "0") != "1"
    return bool(download)


# ----------------------------------------------------------------------------------------- raw loaders
# Each returns (x_train uint8 or float [0,1] (N,C,H,W), y_train, x_test, y_test, num_classes, label,
# default mean/std, default augment).


def _load_digits() -> tuple:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8), pixels 0..16 -> [0, 1]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    x_tr, x_te = torch.from_numpy(x_tr), torch.from_numpy(x_te)
    mean, std = (x_tr.mean().item(),), (x_tr.std().item(),)
    return x_tr, torch.from_numpy(y_tr), x_te, torch.from_numpy(y_te), 10, "digits (sklearn 8x8)", (mean, std), "none"


def _read_idx(path: Path) -> np.ndarray:
    """Reads an idx file (MNIST format: big-endian magic, dims, uint8 payload), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte payload
        raise NnqError(f"{path}: not a uint8 idx file (magic {magic:#x}); replace it with the original file")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise NnqError(f"{path}: truncated idx file ({arr.size} of {int(np.prod(dims))} values); replace it")
    return arr.reshape(dims)


def _find_idx(raw: Path, stem: str) -> Path | None:
    for cand in (raw / stem, raw / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def _load_mnist_like(name: str, root: Path, download: bool | None) -> tuple:
    folder, tv_cls, label = {
        "mnist": ("MNIST", "MNIST", "MNIST"),
        "fashion_mnist": ("FashionMNIST", "FashionMNIST", "Fashion-MNIST"),
    }[name]
    raw = root / folder / "raw"
    stems = [s for pair in _MNIST_FILES.values() for s in pair]
    missing = [s for s in stems if _find_idx(raw, s) is None]
    if missing and _download_allowed(download):
        _try_torchvision_download(tv_cls, root)
        missing = [s for s in stems if _find_idx(raw, s) is None]
    if missing:
        files = ", ".join(f"{s}.gz" for s in missing)
        raise NnqError(
            f"{name}: missing {files} in {raw}; put the {folder} .gz files there (torchvision layout) "
            f"or run once with internet (download allowed and NNQ_OFFLINE unset)"
        )
    out = []
    for split in ("train", "test"):
        img_stem, lab_stem = _MNIST_FILES[split]
        x = torch.from_numpy(_read_idx(_find_idx(raw, img_stem)).copy())[:, None]  # (N, 1, 28, 28) uint8
        y = torch.from_numpy(_read_idx(_find_idx(raw, lab_stem)).astype(np.int64))
        out += [x, y]
    return (*out, 10, label, _DEFAULT_STATS[name], "none")


def _try_torchvision_download(cls_name: str, root: Path) -> None:
    """Best effort: torchvision's own download into ``root`` with a short socket timeout."""
    import torchvision.datasets as tvd

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        root.mkdir(parents=True, exist_ok=True)
        getattr(tvd, cls_name)(str(root), train=True, download=True)
        getattr(tvd, cls_name)(str(root), train=False, download=True)
    except Exception:  # noqa: BLE001 - any failure (no network, read-only dir) ends in the NnqError of the caller
        pass
    finally:
        socket.setdefaulttimeout(old)


def _load_cifar10(root: Path, download: bool | None) -> tuple:
    base = root / "cifar-10-batches-py"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [f for f in files if not (base / f).is_file()]
    if missing and _download_allowed(download):
        _try_torchvision_download("CIFAR10", root)
        missing = [f for f in files if not (base / f).is_file()]
    if missing:
        raise NnqError(
            f"cifar10: missing {', '.join(missing)} in {base}; put the official python release there "
            f"(cifar-10-python.tar.gz unpacked, torchvision layout), run once with internet, "
            f"or use --dataset cifar10_jpeg"
        )
    import torchvision.datasets as tvd

    out = []
    for train in (True, False):
        ds = tvd.CIFAR10(str(root), train=train, download=False)
        out += [torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.int64)]
    return (*out, 10, "CIFAR-10", _DEFAULT_STATS["cifar10"], "crop_flip")


# ------------------------------------------------------------------------------ image folders (cached)


def _decode(data: bytes | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _stack(
    items: list[tuple[str, str, bytes | Path]], classes: list[str], desc: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decodes ``(class, filename, source)`` items in ImageFolder order -> uint8 (N,3,H,W), int64 labels."""
    from tqdm import tqdm

    _no_progress = os.environ.get("NNQ_PROGRESS") == "0"
    items = sorted(items, key=lambda t: (t[0], t[1]))
    idx = {c: i for i, c in enumerate(classes)}
    imgs = [_decode(src) for _, _, src in tqdm(items, desc=desc, unit="img", mininterval=1.0, disable=_no_progress)]
    shapes = {a.shape for a in imgs}
    if len(shapes) != 1:
        raise NnqError(f"{desc}: images have different sizes {sorted(shapes)[:3]}...; resize the folder to one size")
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([idx[c] for c, _, _ in items], dtype=torch.int64)
    return x, y


def _cached_decode(key: str, build) -> dict:
    """Loads the decoded tensors for ``key`` from the cache, building (and saving) them once."""
    path = cache_root() / f"decoded-{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a broken cache file is rebuilt
            pass
    obj = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return obj


def _decode_tar(tar_path: Path, desc: str) -> dict:
    """Decodes an archive holding ``<top>/{train,test}/<class>/<file>`` straight from the tar stream."""
    items: dict[str, list] = {"train": [], "test": []}
    with tarfile.open(tar_path, "r:*") as tf:
        for m in tf:
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) < 4 or parts[-3] not in items:
                continue
            items[parts[-3]].append((parts[-2], parts[-1], tf.extractfile(m).read()))
    return _decode_items(items, desc)


def _decode_folder(root: Path, desc: str) -> dict:
    items: dict[str, list] = {"train": [], "test": []}
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}
    for split in items:
        for cls_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            items[split] += [(cls_dir.name, f.name, f) for f in cls_dir.iterdir() if f.suffix.lower() in exts]
    return _decode_items(items, desc)


def _decode_items(items: dict[str, list], desc: str) -> dict:
    classes = sorted({c for c, _, _ in items["train"]})
    if not classes or not items["test"]:
        raise NnqError(f"{desc}: no images found in train/<class>/ and test/<class>/; check the folder layout")
    extra = sorted({c for c, _, _ in items["test"]} - set(classes))
    if extra:
        raise NnqError(f"{desc}: test classes {extra} have no train folder; make train/ and test/ share classes")
    x_tr, y_tr = _stack(items["train"], classes, f"{desc} train (decoded once, then cached)")
    x_te, y_te = _stack(items["test"], classes, f"{desc} test")
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, "classes": classes}


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}"


def _load_cifar10_jpeg(root: Path) -> tuple:
    tar = root / _CIFAR10_JPEG_TAR
    unpacked = next((d for d in (root / "CIFAR-10-images", root / "cifar10-jpeg" / "CIFAR-10-images")
                     if (d / "train").is_dir() and (d / "test").is_dir()), None)
    if tar.is_file():
        obj = _cached_decode(f"cifar10_jpeg|{_stamp(tar)}", lambda: _decode_tar(tar, "cifar10_jpeg"))
    elif unpacked is not None:
        obj = _cached_decode(f"imagefolder|{_stamp(unpacked)}", lambda: _decode_folder(unpacked, "cifar10_jpeg"))
    else:
        raise NnqError(
            f"cifar10_jpeg: missing {tar} (or an unpacked CIFAR-10-images/{{train,test}} in {root}); "
            f"put CIFAR-10-images-jpeg.tar.gz there (see the data SOURCES.md)"
        )
    return (obj["x_train"], obj["y_train"], obj["x_test"], obj["y_test"], len(obj["classes"]),
            "CIFAR-10 (JPEG q75)", _DEFAULT_STATS["cifar10"], "crop_flip")


def _load_imagefolder(folder: str, root: Path) -> tuple:
    path = Path(folder).expanduser()
    if not path.is_absolute() and not path.exists():
        path = root / folder
    if not ((path / "train").is_dir() and (path / "test").is_dir()):
        raise NnqError(f"imagefolder: {path} has no train/ and test/ subfolders; give a root holding both")
    obj = _cached_decode(f"imagefolder|{_stamp(path)}", lambda: _decode_folder(path, f"imagefolder {path.name}"))
    mean = tuple((obj["x_train"].float() / 255).mean(dim=(0, 2, 3)).tolist())
    std = tuple((obj["x_train"].float() / 255).std(dim=(0, 2, 3)).tolist())
    return (obj["x_train"], obj["y_train"], obj["x_test"], obj["y_test"], len(obj["classes"]),
            f"ImageFolder {path.name}", (mean, std), "crop_flip")


# ------------------------------------------------------------------------------------------ synthetic


def make_synthetic(
    n_train: int = 512,
    n_test: int = 256,
    shape: tuple[int, int, int] = (1, 8, 8),
    num_classes: int = 10,
    *,
    noise: float = 0.5,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> DataBundle:
    """A deterministic, linearly separable data set for tests.

    Each class has a fixed random mean image (unit-variance entries); samples are the mean plus
    Gaussian noise of std ``noise``. Labels cycle through the classes, so every class is present.

    Args:
        n_train: Training samples.
        n_test: Test samples.
        shape: ``(C, H, W)``.
        num_classes: Number of classes.
        noise: Noise std around each class mean.
        seed: Seed of the generator (same seed -> identical tensors).
        device: Where the tensors live.
    """
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, *shape, generator=g)
    out = []
    for n in (n_train, n_test):
        y = torch.arange(n) % num_classes
        x = means[y] + noise * torch.randn(n, *shape, generator=g)
        out += [x.to(device), y.to(device)]
    return DataBundle("synthetic", "synthetic", *out, num_classes, tuple(shape), "none")


# ------------------------------------------------------------------------------------------ public API


def _subset(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random subset of n samples (seed 0, sorted indices); all of them when n is None or >= len."""
    if n is None or n >= len(x):
        return x, y
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n].sort().values
    return x[idx], y[idx]


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    normalize: str = "default",
    resize: int | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    download: bool | None = None,
) -> DataBundle:
    """Loads a named data set as normalised tensors on ``device``.

    Args:
        name: One of "digits", "mnist", "fashion_mnist", "cifar10", "cifar10_jpeg", "imagefolder:<root>",
            "synthetic".
        data_dir: Root of the torchvision-layout data; default ``$NNQ_DATA_DIR``, else ``./data``.
        device: Device of the returned tensors.
        normalize: "default" (the set's own mean/std), "imagenet" (ImageNet mean/std; 1-channel sets use
            the mean of the three values), or "none" (pixels in [0, 1]).
        resize: If given, images are resized to ``resize x resize`` (bilinear, antialiased, rounded to
            8-bit like PIL's ``Resize`` + ``ToTensor``).
        limit_train: Keep n training samples: a fixed random subset (seed 0, original order kept), so that
            sets stored class by class (image folders) still mix every class.
        limit_test: Keep n test samples, chosen the same way.
        download: Allow downloading missing files; None means allowed unless ``NNQ_OFFLINE=1``.

    Returns:
        The :class:`DataBundle`.

    Raises:
        NnqError: unknown name or option, or files missing (the message names them and where to put them).
    """
    if normalize not in NORMALIZE_MODES:
        raise NnqError(f"unknown normalize {normalize!r}; use one of {', '.join(NORMALIZE_MODES)}")
    if resize is not None and (not isinstance(resize, int) or resize <= 0):
        raise NnqError(f"resize must be a positive int, got {resize!r}")
    for lim_name, lim in (("limit_train", limit_train), ("limit_test", limit_test)):
        if lim is not None and lim <= 0:
            raise NnqError(f"{lim_name} must be positive, got {lim}")
    root = data_root(data_dir)
    if name == "synthetic":
        b = make_synthetic(device="cpu")
        raw = (b.x_train, b.y_train, b.x_test, b.y_test, b.num_classes, b.label, None, "none")
    elif name == "digits":
        raw = _load_digits()
    elif name in ("mnist", "fashion_mnist"):
        raw = _load_mnist_like(name, root, download)
    elif name == "cifar10":
        raw = _load_cifar10(root, download)
    elif name == "cifar10_jpeg":
        raw = _load_cifar10_jpeg(root)
    elif name.startswith("imagefolder:") and len(name) > len("imagefolder:"):
        raw = _load_imagefolder(name.split(":", 1)[1], root)
    else:
        raise NnqError(f"unknown data set {name!r}; known: {', '.join(KNOWN_DATASETS)}")
    x_tr, y_tr, x_te, y_te, num_classes, label, stats, augment = raw
    x_tr, y_tr = _subset(x_tr, y_tr, limit_train)
    x_te, y_te = _subset(x_te, y_te, limit_test)

    def prep(x: torch.Tensor) -> torch.Tensor:
        # In-place arithmetic: the train sets are hundreds of MB as float32 and temporaries cost seconds.
        x = x.to(device)
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        x = x.to(torch.float32, copy=True)
        if resize is not None and tuple(x.shape[-2:]) != (resize, resize):
            x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False, antialias=True)
            if scale == 255.0:  # PIL Resize + ToTensor round to 8 bits; match it for 8-bit sources
                x.round_().clamp_(0, 255)
        c = x.shape[1]
        if normalize == "none" or (normalize == "default" and stats is None):
            return x.div_(scale) if scale != 1.0 else x
        mean, std = stats if normalize == "default" else (IMAGENET_MEAN, IMAGENET_STD)
        if c != len(mean):
            if c == 1:  # 1-channel set, 3-channel statistics: use their mean
                mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
            else:
                raise NnqError(f"{name}: {c}-channel images but {len(mean)}-channel statistics; use normalize='none'")
        m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1) * scale
        s = torch.tensor(std, device=x.device).view(1, -1, 1, 1) * scale
        return x.sub_(m).div_(s)

    x_tr, x_te = prep(x_tr), prep(x_te)
    return DataBundle(
        name=name,
        label=label,
        x_train=x_tr,
        y_train=y_tr.to(device=device, dtype=torch.int64),
        x_test=x_te,
        y_test=y_te.to(device=device, dtype=torch.int64),
        num_classes=num_classes,
        input_shape=tuple(x_tr.shape[1:]),
        augment=augment,
    )


def crop_flip(x: torch.Tensor, generator: torch.Generator | None = None, *, pad: int = 4) -> torch.Tensor:
    """Random crop with ``pad``-pixel zero padding and random horizontal flip, for a whole batch at once.

    Zero padding is applied to the (normalised) tensor, i.e. the padding is the data-set mean colour.

    Args:
        x: ``(B, C, H, W)`` images.
        generator: CPU generator for the random offsets and flips (seeded -> reproducible).
        pad: Padding on each side; crop offsets are uniform in ``[0, 2 * pad]``.

    Returns:
        ``(B, C, H, W)`` augmented images (a new tensor).
    """
    b, c, h, w = x.shape
    dev = x.device
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
    xp = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
    cols = dx[:, None] + torch.arange(w, device=dev)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]  # (B, 1, 1, W)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return xp[bi, ci, rows, cols]


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: str = "none",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yields ``(x_batch, y_batch)`` on the tensors' device; one pass over all samples (last batch may be short).

    Args:
        x: ``(N, C, H, W)`` images.
        y: ``(N,)`` labels.
        batch_size: Samples per batch.
        shuffle: Visit the samples in a random order (a permutation: every sample exactly once).
        generator: CPU generator for the order and the augmentation.
        augment: "none" or "crop_flip" (see :func:`crop_flip`).
    """
    if batch_size <= 0:
        raise NnqError(f"batch_size must be positive, got {batch_size}")
    if augment not in AUGMENT_MODES:
        raise NnqError(f"unknown augment {augment!r}; use one of {', '.join(AUGMENT_MODES)}")
    n = x.shape[0]
    order = torch.randperm(n, generator=generator).to(x.device) if shuffle else None
    for start in range(0, n, batch_size):
        if order is None:
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            xb, yb = x[idx], y[idx]
        if augment == "crop_flip":
            xb = crop_flip(xb, generator)
        yield xb, yb
