"""Named data sets with one call: small sets as tensors on the training device, image folders streamed.

``load_dataset(name, ...)`` returns a data source with one interface (the one ``common.train.fit`` and
``common.evaluate.evaluate_split`` use): ``streaming``, ``has_split``, ``train_steps_per_epoch``,
``train_batches`` (order and augmentation a function of seed, epoch and batch/sample index only, so a resumed
run sees the same batches), ``eval_batches``, ``name``, ``label``, ``num_classes``, ``input_shape``.

* Small sets are a :class:`DataBundle`: float32 ``(N, C, H, W)`` tensors (already normalised) and int64 labels,
  moved to the training device once; batching and augmentation happen on tensors (airbench style) without any
  per-sample Python.
* Image folders (``imagefolder:<root>``, e.g. ImageNet) are a :class:`FolderData`: the file list in memory,
  images decoded and augmented per sample in DataLoader worker processes (the ImageNet recipes:
  RandomResizedCrop + flip for training, Resize + CenterCrop for evaluation), so memory does not grow with
  the folder and images may have any size and colour mode.

Names:
    ``digits``        scikit-learn's 8x8 digits (1x8x8, embedded, no download; default of quick presets).
    ``mnist``, ``fashion_mnist``  1x28x28 from torchvision's ``<data_dir>/{MNIST,FashionMNIST}/raw``.
    ``cifar10``       3x32x32 from torchvision's ``<data_dir>/cifar-10-batches-py``.
    ``cifar100``      3x32x32, 100 fine labels, from torchvision's ``<data_dir>/cifar-100-python``.
    ``svhn``          3x32x32 house-number digits from torchvision's ``<data_dir>/svhn/{train,test}_32x32.mat``
                      (label 0 is the digit 0: the files' label 10 becomes 0, as torchvision does);
                      ``svhn_extra`` adds ``extra_32x32.mat`` to the training images.
    ``cifar10_jpeg``  our JPEG q75 copy of CIFAR-10 (``<data_dir>/cifar10-jpeg/CIFAR-10-images-jpeg.tar.gz``),
                      labelled "CIFAR-10 (JPEG q75)" wherever its numbers appear.
    ``imagefolder:<root>``  an ImageFolder root with ``train/<class>/`` and ``val/<class>/`` (ImageNet's
                      layout; ``val/`` is the test split, as papers report ImageNet "val" accuracy) or
                      ``test/<class>/``; always streamed (:class:`FolderData`).
    ``synthetic``     deterministic separable data for tests (see :func:`make_synthetic`).

Every set has a validation split carved from its training images (a fixed choice, :data:`VAL_SEED`).
The data dir is ``data_dir``, else ``$NNQ_DATA_DIR``, else ``./data``. Decoded JPEG copies (cifar10_jpeg) are
cached in ``$NNQ_CACHE_DIR/decoded`` (else ``~/.cache/nnq/decoded``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import random
import socket
import sys
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.errors import NnqError
from common.paths import atomic_path, cache_dir

KNOWN_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "svhn_extra", "cifar10_jpeg",
                  "imagefolder:<root>", "synthetic")
NORMALIZE_MODES = ("default", "imagenet", "none")
AUGMENT_MODES = ("none", "crop_flip")

# ImageNet's per-channel pixel mean/std in [0, 1], as torchvision's classification references and pretrained
# weights use them; the default normalisation of image folders.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Per-data-set statistics of the training pixels in [0, 1] (torchvision reference scripts' values). CIFAR-100 and
# SVHN have none here: their statistics are computed from the loaded training images (see _pixel_stats).
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

VAL_SEED = 0
"""Seed of the one fixed choice of validation images of every data set (independent of the run's seed)."""
DEFAULT_VAL_SIZE = {"digits": 287, "mnist": 5000, "fashion_mnist": 5000, "cifar10": 5000, "cifar10_jpeg": 5000,
                    "cifar100": 5000, "svhn": 5000, "svhn_extra": 5000, "synthetic": 64}
"""Training images held out as the validation split when ``val_size`` is None (image folders: 2% of train)."""
FOLDER_VAL_FRACTION = 0.02
"""Share of an image folder's ``train/`` held out as its validation split when ``val_size`` is None."""
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
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    streaming = False
    """In-memory tensors (folder data sets stream instead; see :class:`DataSource`)."""

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    def to(self, device: str | torch.device) -> "DataBundle":
        """The same bundle with every tensor on ``device`` (itself when they are there already)."""
        if self.x_train.device == torch.device(device):
            return self
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return DataBundle(**moved)

    def has_split(self, split: str) -> bool:
        """Whether the bundle holds ``split`` ("train", "val" or "test") with at least one sample."""
        x = {"train": self.x_train, "val": self.x_val, "test": self.x_test}[split]
        return x is not None and len(x) > 0

    def train_batches(self, *, epoch: int, seed: int, batch_size: int, rank: int = 0, world: int = 1,
                      skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The shuffled, augmented training batches of one epoch, for process ``rank`` of ``world``.

        The order and the augmentation are functions of (seed, epoch, batch index) only, so a run resumed in
        the middle of an epoch (``skip`` batches already done) sees exactly the batches it would have seen.
        Every process draws the same permutation and takes its own shard (``rank::world``).
        """
        gen = torch.Generator().manual_seed(_mix(seed, epoch))
        perm = torch.randperm(self.n_train, generator=gen)
        if world > 1:
            perm = perm[rank::world][: self.n_train // world]
        perm = perm.to(self.x_train.device)
        for b, start in enumerate(range(0, len(perm), batch_size)):
            if b < skip:
                continue
            idx = perm[start:start + batch_size]
            xb, yb = self.x_train[idx], self.y_train[idx]
            if self.augment == "crop_flip":
                xb = crop_flip(xb, torch.Generator().manual_seed(_mix(seed, epoch, b)))
            yield xb, yb

    def train_steps_per_epoch(self, batch_size: int, world: int = 1) -> int:
        """Batches one process takes from one epoch."""
        n = self.n_train // world if world > 1 else self.n_train
        return -(-n // batch_size)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The ``split`` ("val" or "test") in its stored order, unaugmented."""
        if not self.has_split(split):
            raise NnqError(f"{self.name} has no {split} split here (a validation split needs --val-size > 0)")
        x, y = (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)
        return iterate_batches(x, y, batch_size)


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, batch ...), the same on every machine."""
    h = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


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
    """The decode cache: the ``decoded`` folder of :func:`common.paths.cache_dir`."""
    return cache_dir("decoded")


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


def _load_cifar100(root: Path, download: bool | None) -> tuple:
    base = root / "cifar-100-python"
    files = ["train", "test"]
    missing = [f for f in files if not (base / f).is_file()]
    if missing and _download_allowed(download):
        _try_torchvision_download("CIFAR100", root)
        missing = [f for f in files if not (base / f).is_file()]
    if missing:
        raise NnqError(
            f"cifar100: missing {', '.join(missing)} in {base}; put the official python release there "
            f"(cifar-100-python.tar.gz unpacked, torchvision layout) or run once with internet"
        )
    out = []
    for f in files:
        # The official pickles (also what torchvision.datasets.CIFAR100 reads): 'data' (N, 3072) uint8 in
        # channel-major 32x32 planes, 'fine_labels' 0..99.
        with open(base / f, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        try:
            x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(entry["fine_labels"], dtype=np.int64)
        except (KeyError, ValueError) as exc:
            raise NnqError(f"cifar100: {base / f} is not a CIFAR-100 python batch ({exc}); replace it") from None
        out += [torch.from_numpy(x.copy()), torch.from_numpy(y)]
    return (*out, 100, "CIFAR-100", "train", "crop_flip")


_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


def _read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One SVHN ``.mat``: X (32, 32, 3, N) uint8 -> (N, 3, 32, 32); y (N, 1) in 1..10 (10: the digit 0) -> 0..9."""
    try:
        import scipy.io as sio
    except ImportError:
        raise NnqError("svhn: reading the .mat files needs scipy; pip install scipy") from None
    try:
        mat = sio.loadmat(str(path))
        x = np.transpose(np.asarray(mat["X"], dtype=np.uint8), (3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
        y = np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    except (KeyError, ValueError, OSError) as exc:
        raise NnqError(f"svhn: {path} is not an SVHN 32x32 .mat file ({exc}); replace it") from None
    y[y == 10] = 0  # the files label the digit 0 as 10 (torchvision.datasets.SVHN maps it to 0 too)
    if len(x) != len(y) or x.shape[1:] != (3, 32, 32):
        raise NnqError(f"svhn: {path} holds X {x.shape} and y {y.shape}; replace it with the original file")
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


def _load_svhn(name: str, root: Path, download: bool | None) -> tuple:
    splits = ["train", "test"] + (["extra"] if name == "svhn_extra" else [])
    folders = [root / "svhn", root / "SVHN", root]  # ours, a common spelling, torchvision's root itself
    base = next((d for d in folders if all((d / _SVHN_FILES[s]).is_file() for s in splits)), None)
    if base is None and _download_allowed(download):
        _try_svhn_download(root / "svhn", splits)
        base = root / "svhn" if all((root / "svhn" / _SVHN_FILES[s]).is_file() for s in splits) else None
    if base is None:
        missing = [_SVHN_FILES[s] for s in splits if not (root / "svhn" / _SVHN_FILES[s]).is_file()]
        raise NnqError(
            f"{name}: missing {', '.join(missing)} in {root / 'svhn'}; put the SVHN format-2 (32x32) .mat files "
            f"there (torchvision.datasets.SVHN's files) or run once with internet"
        )
    x_tr, y_tr = _read_svhn_mat(base / _SVHN_FILES["train"])
    if name == "svhn_extra":
        x_ex, y_ex = _read_svhn_mat(base / _SVHN_FILES["extra"])
        x_tr, y_tr = torch.cat([x_tr, x_ex]), torch.cat([y_tr, y_ex])
    x_te, y_te = _read_svhn_mat(base / _SVHN_FILES["test"])
    label = "SVHN (train + extra)" if name == "svhn_extra" else "SVHN"
    return x_tr, y_tr, x_te, y_te, 10, label, "train", "crop_flip"


def _try_svhn_download(folder: Path, splits: list[str]) -> None:
    """Best effort: torchvision's SVHN download into ``folder`` with a short socket timeout."""
    import torchvision.datasets as tvd

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for split in splits:
            tvd.SVHN(str(folder), split=split, download=True)
    except Exception:  # noqa: BLE001 - any failure ends in the NnqError of the caller
        pass
    finally:
        socket.setdefaulttimeout(old)


def _pixel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``(N, C, H, W)`` images as pixels in [0, 1] (float64 sums, in chunks)."""
    c = x.shape[1]
    s1, s2, n = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for start in range(0, len(x), 4096):
        chunk = x[start:start + 4096].to(torch.float64).div_(255.0)
        s1 += chunk.sum(dim=(0, 2, 3))
        s2 += chunk.square_().sum(dim=(0, 2, 3))
        n += chunk.numel() // c
    mean = s1 / n
    std = (s2 / n - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


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
    path = cache_root() / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a broken cache file is rebuilt
            pass
    obj = build()
    with atomic_path(path, fsync=False) as tmp:
        torch.save(obj, tmp)
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


# ----------------------------------------------------------------------------- image folders (streamed)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File endings an image folder is scanned for, in any case (torchvision's ImageFolder list)."""
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


class SkippedImageWarning(UserWarning):
    """An image of a folder data set could not be read and was left out of its batch."""


class StreamingDataError(NnqError, AttributeError):
    """A streamed data set was asked for an in-memory tensor (``x_test``, ...)."""


@dataclass(frozen=True)
class FolderRecipe:
    """How images of a folder become network inputs (the ImageNet recipes of torchvision's references).

    Training: RandomResizedCrop to ``image_size`` (area share ``crop_scale``, aspect ``crop_ratio``) and a
    horizontal flip with probability 1/2, each drawn from the sample's own seed. Evaluation: Resize of the
    shorter side to ``eval_resize``, then CenterCrop ``image_size``. Both bilinear (antialiased), then
    ``(pixel / 255 - mean) / std`` per channel.
    """

    image_size: int = 224
    eval_resize: int = 256
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    train_augment: bool = True
    """False: training images get the evaluation recipe (no random crop, no flip)."""


def random_resized_crop_box(height: int, width: int, rng: random.Random, scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a RandomResizedCrop box, drawn as torchvision's ``RandomResizedCrop`` draws it
    (10 tries of area share ~ U(scale) and log-uniform aspect ratio, else the central crop of the clamped ratio),
    but from ``rng`` instead of torch's global generator."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _open_rgb(path: str):
    """The image at ``path`` decoded as 8-bit RGB (grayscale, CMYK, palette and alpha images converted)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        return im.convert("RGB")  # also forces the full decode: truncated files fail here


@dataclass(frozen=True)
class _Skipped:
    """What a worker returns instead of a sample whose file cannot be read."""

    path: str
    reason: str


class _FolderImages(torch.utils.data.Dataset):
    """Decodes one sample per key ``(split code, index, epoch seed)``; what DataLoader workers run.

    Holds the file lists as NumPy byte-string arrays (no per-file Python objects, so forked workers do not
    copy them page by page) and nothing that changes during a run: everything random comes with the key.
    """

    def __init__(self, roots: list[str], paths: list[np.ndarray], labels: list[np.ndarray], recipe: FolderRecipe):
        self.roots, self.paths, self.labels, self.recipe = roots, paths, labels, recipe

    def __len__(self) -> int:
        return sum(len(p) for p in self.paths)

    def path(self, split: int, index: int) -> str:
        return os.path.join(self.roots[split], os.fsdecode(self.paths[split][index]))

    def __getitem__(self, key: tuple[int, int, int | None]):
        import torchvision.transforms.v2.functional as TF

        split, index, epoch_seed = key
        path = self.path(split, index)
        try:
            img = _open_rgb(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped and reported, never a crash
            return _Skipped(path, f"{type(exc).__name__}: {str(exc)[:120]}")
        r, size = self.recipe, [self.recipe.image_size] * 2
        if epoch_seed is not None and r.train_augment:
            rng = random.Random(_mix(epoch_seed, index))  # per sample: the same for any worker count or batch size
            top, left, h, w = random_resized_crop_box(img.height, img.width, rng, r.crop_scale, r.crop_ratio)
            img = TF.resized_crop(img, top, left, h, w, size, antialias=True)
            if rng.random() < 0.5:
                img = TF.horizontal_flip(img)
        else:
            img = TF.center_crop(TF.resize(img, [r.eval_resize], antialias=True), size)
        return TF.pil_to_tensor(img), int(self.labels[split][index])


class _Collate:
    """Stacks the readable samples of a batch and normalises them; reports the skipped ones by path."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self.mean = torch.tensor(mean).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std).view(1, -1, 1, 1) * 255.0

    def __call__(self, samples: list) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
        ok = [s for s in samples if not isinstance(s, _Skipped)]
        skipped = [(s.path, s.reason) for s in samples if isinstance(s, _Skipped)]
        if not ok:
            return torch.empty(0), torch.empty(0, dtype=torch.int64), skipped
        x = torch.stack([s[0] for s in ok]).to(torch.float32).sub_(self.mean).div_(self.std)
        return x, torch.tensor([s[1] for s in ok], dtype=torch.int64), skipped


class _Plan:
    """The batch sampler of a loader: yields the key lists of whatever pass was set last (see FolderData)."""

    def __init__(self):
        self.batches: Iterator[list] = iter(())
        self.n = 0

    def set(self, batches: Iterator[list], n: int) -> None:
        self.batches, self.n = batches, n

    def __iter__(self):
        return self.batches

    def __len__(self) -> int:
        return self.n


def _worker_init(_worker_id: int) -> None:
    """DataLoader worker start: fixes glibc's mmap threshold at 128 KiB.

    glibc raises the threshold each time a large block is freed, after which decoded images come from the heap
    and fragment it: one worker then grows by ~0.5 GB over the first few thousand ImageNet-sized JPEGs
    (measured with ``benchmarks/folder_data.py``). A fixed threshold returns every image buffer to the system.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (malloc.h)
    except OSError:  # not glibc: nothing to do
        pass


def _scan_split(split_dir: Path, classes: list[str] | None, desc: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(classes, relative paths, labels)`` of an ImageFolder split, in torchvision's ImageFolder order
    (classes sorted; files of each class folder walked in sorted order, sub-folders included)."""
    found = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if classes is None:
        classes = found
    elif set(found) - set(classes):
        extra = sorted(set(found) - set(classes))
        raise NnqError(f"{desc}: classes {extra[:5]} of {split_dir} have no train/ folder; "
                       "make the splits share classes")
    index = {c: i for i, c in enumerate(classes)}
    rel, labels = [], []
    for cls in found:
        for dirpath, _, fnames in sorted(os.walk(split_dir / cls, followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    rel.append(os.fsencode(os.path.relpath(os.path.join(dirpath, fname), split_dir)))
                    labels.append(index[cls])
    if not rel:
        loose = any(f.lower().endswith(IMG_EXTENSIONS) for f in os.listdir(split_dir))
        hint = ("its images lie loose: sort them into <class>/ folders (ImageNet val: one folder per wnid)" if loose
                else "put the images in <class>/ sub-folders")
        raise NnqError(f"{desc}: no images found in {split_dir}/<class>/; {hint}")
    return classes, np.array(rel, dtype=np.bytes_), np.array(labels, dtype=np.int64)


def _pick(n: int, k: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random choice of ``k`` of ``n`` (all when k is None or >= n)."""
    if k is None or k >= n:
        return np.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values.numpy()


def default_workers() -> int:
    """DataLoader worker processes per training process: ``$NNQ_WORKERS``, else the CPUs of this process's set
    divided among the processes of this machine (``LOCAL_WORLD_SIZE``), at most 8, at least 1."""
    env = os.environ.get("NNQ_WORKERS")
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise NnqError(f"NNQ_WORKERS must be a whole number, got {env!r}") from None
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))


@dataclass(eq=False)
class FolderData:
    """An ImageFolder data set streamed from disk: the data source :func:`common.train.fit` trains on.

    Files are listed once (``train/<class>/...`` and ``val/<class>/...`` or ``test/<class>/...``); images are
    decoded, augmented (:class:`FolderRecipe`) and normalised in ``workers`` DataLoader processes (0: in this
    process), with pinned memory when CUDA is available and workers kept alive between passes. A file that
    cannot be decoded is left out of its batch with a :class:`SkippedImageWarning` naming it, and listed in
    ``skipped_images``; a training batch left with no image repeats the previous one, so that every process
    of a distributed run takes the same number of steps. Make one with :func:`load_dataset`
    (``"imagefolder:<root>"``).

    Attributes:
        name: The name passed to :func:`load_dataset`.
        label: Human-readable label for tables ("ImageFolder <root name>").
        root: The folder.
        classes: Class folder names; label ``k`` is ``classes[k]``.
        num_classes: ``len(classes)``.
        input_shape: ``(3, image_size, image_size)``.
        recipe: The train/eval transforms and normalisation.
        workers: DataLoader worker processes.
        test_dir: The folder the test split comes from (``val/`` or ``test/``).
        skipped_images: Paths of the unreadable files met so far (each once).
    """

    name: str
    label: str
    root: Path
    classes: list[str]
    recipe: FolderRecipe
    workers: int
    test_dir: str
    _images: _FolderImages
    _index: dict[str, np.ndarray]
    skipped_images: list[str] = field(default_factory=list)

    streaming = True
    augment = "random_resized_crop_flip"
    max_eval_batch = 256

    def __post_init__(self):
        self._loaders: dict[str, tuple[torch.utils.data.DataLoader, _Plan]] = {}
        self._busy: set[str] = set()
        self._seen: set[str] = set(self.skipped_images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.recipe.image_size, self.recipe.image_size)

    @property
    def n_train(self) -> int:
        return len(self._index["train"])

    def split_size(self, split: str) -> int:
        """Images of ``split`` ("train", "val" or "test")."""
        return len(self._index[split])

    def files(self, split: str) -> list[str]:
        """The image paths of ``split`` in stored order (``eval_batches`` order; train before shuffling)."""
        code = _SPLIT_CODES[split]
        return [self._images.path(code, int(i)) for i in self._index[split]]

    def labels(self, split: str) -> torch.Tensor:
        """int64 labels of ``split`` in stored order."""
        return torch.from_numpy(self._images.labels[_SPLIT_CODES[split]][self._index[split]].copy())

    def has_split(self, split: str) -> bool:
        """Whether ``split`` ("train", "val" or "test") holds at least one image."""
        return split in self._index and len(self._index[split]) > 0

    def to(self, device: str | torch.device) -> "FolderData":
        """Itself: batches stream to the device one at a time (``fit`` moves each)."""
        return self

    def train_steps_per_epoch(self, batch_size: int, world: int = 1) -> int:
        """Batches one process takes from one epoch."""
        n = self.n_train // world if world > 1 else self.n_train
        return -(-n // batch_size)

    def train_batches(self, *, epoch: int, seed: int, batch_size: int, rank: int = 0, world: int = 1,
                      skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The shuffled, augmented training batches of one epoch, for process ``rank`` of ``world``.

        Like :meth:`DataBundle.train_batches`: every process draws the same permutation (seeded by seed and
        epoch) and takes its shard ``rank::world``; each image's crop and flip are drawn from (seed, epoch,
        image index) only, so the batches do not depend on the worker count, and a run resumed with ``skip``
        batches done gets exactly the remaining ones.
        """
        epoch_seed = _mix(seed, epoch)
        perm = torch.from_numpy(self._index["train"])[
            torch.randperm(self.n_train, generator=torch.Generator().manual_seed(epoch_seed))]
        if world > 1:
            perm = perm[rank::world][: self.n_train // world]
        idx = perm.tolist()
        starts = range(skip * batch_size, len(idx), batch_size)
        keys = ([(0, i, epoch_seed) for i in idx[s:s + batch_size]] for s in starts)
        return self._stream("train", keys, len(starts))

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The ``split`` ("val", "test", or "train" for statistics) in its stored order, with the evaluation recipe.

        Batches hold at most :attr:`max_eval_batch` images whatever ``batch_size`` asks (``fit`` evaluates with
        1,000, sized for in-memory sets: 1,000 ImageNet crops are 600 MB per batch in flight).
        """
        if not self.has_split(split):
            raise NnqError(f"{self.name} has no {split} split here (a validation split needs --val-size > 0)")
        if batch_size <= 0:
            raise NnqError(f"batch_size must be positive, got {batch_size}")
        batch_size = min(batch_size, self.max_eval_batch)
        code, idx = _SPLIT_CODES[split], self._index[split].tolist()
        starts = range(0, len(idx), batch_size)
        return self._stream("eval", ([(code, i, None) for i in idx[s:s + batch_size]] for s in starts), len(starts))

    def _stream(self, role: str, keys: Iterator[list], n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Runs the key batches through the role's persistent loader (a one-off loader if it is in use)."""
        if role in self._busy:  # e.g. a test evaluation inside a training pass: never share the iterator
            loader, plan = self._make_loader(persistent=False)
        else:
            loader, plan = self._loaders.get(role) or self._loaders.setdefault(role, self._make_loader())
            self._busy.add(role)
        plan.set(keys, n)
        last, owed = None, 0
        try:
            for x, y, skipped in loader:
                self._note(skipped)
                if len(y) == 0 and role == "train":
                    # A training batch with no readable image: every process must take the same number of
                    # steps (DDP), so the previous batch is taken again (the next one twice if none came yet).
                    if last is None:
                        owed += 1
                    else:
                        yield last
                    continue
                if len(y):
                    for _ in range(owed + 1):
                        yield x, y
                    last, owed = (x, y), 0
            if owed:
                raise NnqError(f"{self.name}: no readable image in a whole training pass; check the files "
                               f"(skipped: {', '.join(self.skipped_images[:3])} ...)")
        finally:
            if plan is self._loaders.get(role, (None, None))[1]:
                self._busy.discard(role)

    def _make_loader(self, persistent: bool = True) -> tuple[torch.utils.data.DataLoader, _Plan]:
        plan = _Plan()
        w = self.workers
        loader = torch.utils.data.DataLoader(
            self._images, batch_sampler=plan, num_workers=w, collate_fn=_Collate(self.recipe.mean, self.recipe.std),
            pin_memory=torch.cuda.is_available(), persistent_workers=persistent and w > 0,
            prefetch_factor=2 if w > 0 else None, worker_init_fn=_worker_init if w > 0 else None)
        return loader, plan

    def _note(self, skipped: list[tuple[str, str]]) -> None:
        for path, reason in skipped:
            if path not in self._seen:
                self._seen.add(path)
                self.skipped_images.append(path)
                warnings.warn(f"unreadable image skipped: {path} ({reason})", SkippedImageWarning, stacklevel=2)

    def close(self) -> None:
        """Stops the worker processes (they also stop when the object is garbage-collected)."""
        self._loaders.clear()
        self._busy.clear()

    def __getattr__(self, name: str):
        if name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            raise StreamingDataError(
                f"{self.name} streams from disk and has no {name} tensor; read a split with "
                f"common.evaluate.evaluate_split(model, data, split) or data.eval_batches(split, batch_size)")
        raise AttributeError(name)


def load_image_folder(
    folder: str | os.PathLike,
    *,
    name: str | None = None,
    val_size: int | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    workers: int | None = None,
    recipe: FolderRecipe = FolderRecipe(),
) -> FolderData:
    """An ImageFolder root as a streamed :class:`FolderData`.

    Args:
        folder: Root holding ``train/<class>/`` and ``val/<class>/`` (ImageNet; ``val/`` is the test split) or
            ``test/<class>/`` (used when both exist).
        name: Name to report (default ``imagefolder:<folder>``).
        val_size: ``train/`` images held out as the validation split, a fixed choice (:data:`VAL_SEED`); None:
            2% of ``train/`` (at least one); 0: none.
        limit_train: Keep a fixed random subset of n training images (seed 0), after the validation carve.
        limit_test: Keep a fixed random subset of n test images, and at most n validation images.
        workers: DataLoader worker processes; None: :func:`default_workers`.
        recipe: Image size, evaluation resize, crop and normalisation settings.

    Raises:
        NnqError: no ``train/`` or no ``val/``/``test/`` folder, no images, classes of the test folder missing
            from ``train/``, or a bad setting.
    """
    path = Path(folder).expanduser()
    name = name or f"imagefolder:{folder}"
    test_dir = next((d for d in ("test", "val") if (path / d).is_dir()), None)
    if not (path / "train").is_dir() or test_dir is None:
        raise NnqError(f"{name}: {path} needs train/<class>/ and val/<class>/ (ImageNet layout) or test/<class>/ "
                       f"sub-folders; give the root holding them")
    if recipe.eval_resize < recipe.image_size or recipe.image_size < 1:
        raise NnqError(f"{name}: eval_resize ({recipe.eval_resize}) must be at least image_size ({recipe.image_size})")
    if len(recipe.mean) != 3 or len(recipe.std) != 3 or min(recipe.std) <= 0:
        raise NnqError(f"{name}: mean and std need 3 values each (RGB), std positive; got {recipe.mean}, {recipe.std}")
    classes, tr_paths, tr_labels = _scan_split(path / "train", None, name)
    _, te_paths, te_labels = _scan_split(path / test_dir, classes, name)
    n = len(tr_paths)
    if val_size is None:
        val_size = max(1, int(n * FOLDER_VAL_FRACTION))
    if not 0 <= val_size < n:
        raise NnqError(f"val_size must be in [0, {n}) for {name} ({n} training images), got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SEED)).numpy()
    val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    train_idx = train_idx[_pick(len(train_idx), limit_train, 0)]
    val_idx = val_idx[_pick(len(val_idx), limit_test, 0)]
    test_idx = _pick(len(te_paths), limit_test, 0)
    images = _FolderImages([str(path / "train"), str(path / "train"), str(path / test_dir)],
                           [tr_paths, tr_paths, te_paths], [tr_labels, tr_labels, te_labels], recipe)
    return FolderData(name=name, label=f"ImageFolder {path.resolve().name}", root=path, classes=classes,
                      recipe=recipe, workers=default_workers() if workers is None else workers, test_dir=test_dir,
                      _images=images, _index={"train": train_idx, "val": val_idx, "test": test_idx})


def make_image_folder(
    root: str | os.PathLike,
    *,
    classes: int = 4,
    per_class: int = 7,
    test_per_class: int = 3,
    sizes: tuple[tuple[int, int], ...] = ((500, 375), (375, 500), (320, 240), (61, 47), (256, 300)),
    formats: str = "mixed",
    split_names: tuple[str, str] = ("train", "val"),
    corrupt: bool = True,
    seed: int = 0,
) -> Path:
    """Writes a tiny ImageNet-layout folder: ``<root>/{train,val}/<class>/<file>`` for tests and benchmarks.

    Class ``k`` (folder ``n0000000k``) has its own colour, so a model can learn something. Image ``i`` of a
    split cycles through ``sizes`` (width, height) and, with ``formats="mixed"``, through RGB / grayscale /
    CMYK JPEGs and RGBA / palette / grayscale PNGs, with ``.jpg``, ``.jpeg``, ``.JPEG`` and ``.PNG`` endings;
    ``formats="jpeg"`` writes RGB ``.JPEG`` files only (ImageNet-like, quality 90). With ``corrupt``, one
    train file holds random bytes and one test file is a truncated JPEG.

    Returns:
        ``root`` as a Path.
    """
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    kinds = [("JPEG", "RGB", ".JPEG")] if formats == "jpeg" else [
        ("JPEG", "RGB", ".jpg"), ("JPEG", "L", ".jpeg"), ("JPEG", "CMYK", ".JPEG"), ("PNG", "RGBA", ".png"),
        ("PNG", "P", ".PNG"), ("PNG", "L", ".png"), ("JPEG", "RGB", ".JPEG")]
    for split, n in zip(split_names, (per_class, test_per_class)):
        for k in range(classes):
            folder = root / split / f"n{k:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(k * 67) % 256, (k * 151 + 80) % 256, (k * 29 + 160) % 256], dtype=np.float32)
            for i in range(n):
                w, h = sizes[(i + k) % len(sizes)]
                fmt, mode, ext = kinds[(i + k) % len(kinds)]
                # smooth shading plus noise: JPEG sizes like photographs', not like flat colour
                ramp = np.linspace(0.6, 1.2, w, dtype=np.float32)[None, :, None]
                arr = colour * ramp + rng.normal(0, 25, (h, w, 3)).astype(np.float32)
                img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
                img = img.quantize(64) if mode == "P" else img.convert(mode)
                img.save(folder / f"{split}_{k}_{i:05d}{ext}", fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    if corrupt:
        (root / split_names[0] / f"n{0:08d}" / "corrupt_00000.JPEG").write_bytes(rng.bytes(2000))
        good = io.BytesIO()
        Image.new("RGB", (300, 200), (200, 30, 30)).save(good, "JPEG", quality=90)
        (root / split_names[1] / f"n{min(1, classes - 1):08d}" / "truncated_00000.jpg").write_bytes(
            good.getvalue()[: len(good.getvalue()) // 3])
    return root


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


def _say(line: str) -> None:
    """One ``data:`` line on stderr from the main process, unless ``NNQ_PROGRESS=0``."""
    if os.environ.get("NNQ_PROGRESS") != "0" and int(os.environ.get("RANK", "0")) == 0:
        print(f"data: {line}", file=sys.stderr, flush=True)


def _carve_val(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_val, y_val): ``n`` samples chosen once with :data:`VAL_SEED` become validation."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(VAL_SEED))
    val, train = perm[:n].sort().values, perm[n:].sort().values
    return x[train], y[train], x[val], y[val]


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    normalize: str = "default",
    resize: int | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    val_size: int | None = None,
    download: bool | None = None,
    workers: int | None = None,
    image_size: int | None = None,
    eval_resize: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> DataBundle | FolderData:
    """Loads a named data set: small sets as normalised tensors on ``device``, image folders streamed.

    Which path runs is said in one line on stderr (hidden with ``NNQ_PROGRESS=0``): ``imagefolder:`` data
    always streams (:class:`FolderData`, whatever its size); every named set is held in memory
    (:class:`DataBundle`).

    Args:
        name: One of :data:`KNOWN_DATASETS` ("imagefolder:<root>" with the folder; a relative root that does
            not exist as given is looked up under the data dir).
        data_dir: Root of the torchvision-layout data; default ``$NNQ_DATA_DIR``, else ``./data``.
        device: Device of the returned tensors.
        normalize: "default" (the set's own mean/std; image folders: ImageNet's), "imagenet" (ImageNet mean/std;
            1-channel sets use the mean of the three values), or "none" (pixels in [0, 1]).
        resize: If given, images are resized to ``resize x resize`` (bilinear, antialiased, rounded to
            8-bit like PIL's ``Resize`` + ``ToTensor``). Image folders: the crop size when ``image_size`` is None.
        limit_train: Keep n training samples: a fixed random subset (seed 0, original order kept), so that
            sets stored class by class (image folders) still mix every class.
        limit_test: Keep n test samples, chosen the same way (and at most n validation samples).
        val_size: Training samples held out as the validation split: a fixed random choice (seed
            :data:`VAL_SEED`, the same for every run), carved before ``limit_train`` applies. None: the set's
            default (:data:`DEFAULT_VAL_SIZE`); 0: no validation split.
        download: Allow downloading missing files; None means allowed unless ``NNQ_OFFLINE=1``.
        workers: Image folders: DataLoader worker processes (0: decode in this process); None:
            :func:`default_workers`.
        image_size: Image folders: side of the square crops the network sees (default 224, or ``resize``).
        eval_resize: Image folders: shorter side before the evaluation center crop (default
            ``round(image_size * 256 / 224)``, i.e. 256 for 224).
        mean: Per-channel mean of pixels in [0, 1] to subtract, overriding ``normalize`` (give ``std`` too).
        std: Per-channel std to divide by, overriding ``normalize``.

    Returns:
        A :class:`DataBundle` (named sets) or a :class:`FolderData` (image folders).

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
    if (mean is None) != (std is None):
        raise NnqError("give both mean and std (per-channel statistics of pixels in [0, 1]), or neither")
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
    elif name == "cifar100":
        raw = _load_cifar100(root, download)
    elif name in ("svhn", "svhn_extra"):
        raw = _load_svhn(name, root, download)
    elif name == "cifar10_jpeg":
        raw = _load_cifar10_jpeg(root)
    elif name.startswith("imagefolder:") and len(name) > len("imagefolder:"):
        folder = Path(name.split(":", 1)[1]).expanduser()
        if not folder.is_absolute() and not folder.exists():
            folder = root / folder
        size = image_size or resize or 224
        if normalize == "none":
            stats = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        else:
            stats = (IMAGENET_MEAN, IMAGENET_STD)
        recipe = FolderRecipe(image_size=size, eval_resize=eval_resize or round(size * 256 / 224),
                              mean=tuple(mean or stats[0]), std=tuple(std or stats[1]))
        if workers is not None and workers < 0:
            raise NnqError(f"workers must be 0 or more, got {workers}")
        data = load_image_folder(folder, name=name, val_size=val_size, limit_train=limit_train,
                                 limit_test=limit_test, workers=workers, recipe=recipe)
        _say(f"{data.label}: streaming from {folder} ({data.n_train} train, {data.split_size('val')} val carved from "
             f"train/, {data.split_size('test')} test from {data.test_dir}/; {data.workers} loader workers; "
             f"{size}px crops, eval resize {recipe.eval_resize})")
        return data
    else:
        raise NnqError(f"unknown data set {name!r}; known: {', '.join(KNOWN_DATASETS)}")
    x_tr, y_tr, x_te, y_te, num_classes, label, stats, augment = raw
    if val_size is None:
        val_size = DEFAULT_VAL_SIZE.get(name, max(1, len(x_tr) // 50))
    if not 0 <= val_size < len(x_tr):
        raise NnqError(f"val_size must be in [0, {len(x_tr)}) for {name} ({len(x_tr)} training images), got {val_size}")
    x_tr, y_tr, x_va, y_va = _carve_val(x_tr, y_tr, val_size)
    if mean is not None:
        stats, normalize = (tuple(mean), tuple(std)), "default"
    elif stats == "train":  # no cited statistics for this set: those of its training images, as loaded
        stats = _pixel_stats(x_tr)
    x_tr, y_tr = _subset(x_tr, y_tr, limit_train)
    x_te, y_te = _subset(x_te, y_te, limit_test)
    x_va, y_va = _subset(x_va, y_va, limit_test)

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
        mu, sigma = stats if normalize == "default" else (IMAGENET_MEAN, IMAGENET_STD)
        if c != len(mu):
            if c == 1:  # 1-channel set, 3-channel statistics: use their mean
                mu, sigma = (sum(mu) / len(mu),), (sum(sigma) / len(sigma),)
            else:
                raise NnqError(f"{name}: {c}-channel images but {len(mu)}-channel statistics; use normalize='none'")
        m = torch.tensor(mu, device=x.device).view(1, -1, 1, 1) * scale
        s = torch.tensor(sigma, device=x.device).view(1, -1, 1, 1) * scale
        return x.sub_(m).div_(s)

    x_tr, x_te, x_va = prep(x_tr), prep(x_te), prep(x_va)
    _say(f"{label}: in memory on {device} ({len(x_tr)} train, {len(x_va)} val, {len(x_te)} test)")
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
        x_val=x_va,
        y_val=y_va.to(device=device, dtype=torch.int64),
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
