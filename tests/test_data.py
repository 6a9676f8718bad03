"""Tests of common.data: embedded digits, MNIST from $NNQ_DATA_DIR, CIFAR-100 and SVHN files, missing-data errors,
tensor augmentation (streamed image folders: test_streaming.py)."""

import os
from pathlib import Path

import pytest
import torch

from common.data import crop_flip, find_weights, iterate_batches, load_dataset, make_synthetic
from common.errors import NnqError


def _mnist_raw() -> Path | None:
    root = os.environ.get("NNQ_DATA_DIR")
    raw = Path(root) / "MNIST" / "raw" if root else None
    return raw if raw and any(raw.glob("train-images-idx3-ubyte*")) else None


def test_digits_shapes_split_and_determinism():
    a = load_dataset("digits")
    b = load_dataset("digits")
    assert a.x_test.shape == (360, 1, 8, 8)  # 1797 * 0.2 -> 360 test
    assert a.x_train.shape == (1150, 1, 8, 8) and a.x_val.shape == (287, 1, 8, 8)  # 1437 train, 287 held out
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10 and a.augment == "none"
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    # stratified: every class in the test split with 35-37 samples
    counts = a.y_test.bincount(minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    # default normalisation uses the statistics of the 1437 training images (train + val)
    both = torch.cat([a.x_train, a.x_val])
    assert abs(both.mean().item()) < 1e-4 and abs(both.std().item() - 1) < 1e-3
    raw = load_dataset("digits", normalize="none", limit_train=100, limit_test=50)
    assert raw.x_train.shape[0] == 100 and raw.x_test.shape[0] == 50
    assert raw.x_train.min() >= 0 and raw.x_train.max() <= 1 and raw.x_train.max() == 1


def test_mnist_from_data_dir_counts():
    if _mnist_raw() is None:
        pytest.skip("MNIST not in $NNQ_DATA_DIR")
    b = load_dataset("mnist")
    assert b.x_train.shape == (55000, 1, 28, 28) and b.x_val.shape == (5000, 1, 28, 28)  # 60,000 less 5,000 held out
    assert b.x_test.shape == (10000, 1, 28, 28)
    # train class counts from data/SOURCES.md
    assert (b.y_train.bincount() + b.y_val.bincount())[:3].tolist() == [5923, 6742, 5958]
    r = load_dataset("mnist", resize=32, normalize="none", limit_train=10, limit_test=10)
    assert r.x_test.shape == (10, 1, 32, 32) and 0 <= r.x_test.min() and r.x_test.max() <= 1


def test_limited_sets_mix_the_classes_of_a_set_stored_class_by_class(monkeypatch):
    import common.data as data

    ordered = torch.arange(1000).repeat_interleave(1)  # labels sorted as in an image folder
    x, y = torch.zeros(1000, 1, 2, 2), (ordered // 100)
    xs, ys = data._subset(x, y, 100)
    assert len(ys) == 100 and ys.unique().numel() == 10
    assert torch.equal(data._subset(x, y, 100)[1], ys)  # fixed subset
    assert data._subset(x, y, None)[1] is y


def test_missing_mnist_offline_names_files_and_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NNQ_OFFLINE", "1")
    with pytest.raises(NnqError) as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz"):
        assert f in msg


def test_missing_cifar10_jpeg_names_file(tmp_path):
    with pytest.raises(NnqError, match="CIFAR-10-images-jpeg.tar.gz"):
        load_dataset("cifar10_jpeg", tmp_path)


def test_unknown_name_lists_known():
    with pytest.raises(NnqError) as e:
        load_dataset("imagenet22k")
    assert all(n in str(e.value) for n in ("digits", "cifar10_jpeg", "cifar100", "svhn", "imagefolder:"))
    with pytest.raises(NnqError):
        load_dataset("digits", normalize="zscore")


def test_synthetic_deterministic_and_separable():
    a, b = load_dataset("synthetic"), load_dataset("synthetic")
    assert torch.equal(a.x_train, b.x_train) and a.input_shape == (1, 8, 8) and a.num_classes == 10
    s = make_synthetic(64, 32, (3, 4, 4), 4, seed=1)
    assert s.x_train.shape == (64, 3, 4, 4) and set(s.y_test.tolist()) == {0, 1, 2, 3}
    # nearest class mean (from train) classifies the test set well above chance
    means = torch.stack([s.x_train[s.y_train == k].mean(0) for k in range(4)]).flatten(1)
    pred = torch.cdist(s.x_test.flatten(1), means).argmin(1)
    assert (pred == s.y_test).float().mean() > 0.9


def test_crop_flip_shapes_determinism_and_change():
    x = torch.randn(64, 3, 32, 32)
    a = crop_flip(x, torch.Generator().manual_seed(0))
    b = crop_flip(x, torch.Generator().manual_seed(0))
    c = crop_flip(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    # every output is a shifted (and maybe flipped) window: its centre 24x24 equals some crop of x or x.flip(-1)
    for i in range(8):
        ok = False
        for src in (x[i], x[i].flip(-1)):
            for dy in range(-4, 5):
                for dx in range(-4, 5):
                    win = src[:, 4 + dy : 28 + dy, 4 + dx : 28 + dx]
                    ok |= torch.equal(a[i, :, 4:28, 4:28], win)
        assert ok


def test_crop_flip_with_no_shift_only_flips():
    x = torch.randn(16, 1, 5, 5)
    y = crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(16)]
    kept = [torch.equal(y[i], x[i]) for i in range(16)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_iterate_batches_covers_each_sample_once():
    x = torch.arange(103, dtype=torch.float32).view(103, 1, 1, 1)
    y = torch.arange(103)
    g = torch.Generator().manual_seed(0)
    seen = []
    for xb, yb in iterate_batches(x, y, 10, shuffle=True, generator=g):
        assert torch.equal(xb.view(-1).long(), yb)  # x and y stay paired
        seen += yb.tolist()
    assert sorted(seen) == list(range(103)) and seen != list(range(103))
    unshuffled = [yb for _, yb in iterate_batches(x, y, 50)]
    assert [len(b) for b in unshuffled] == [50, 50, 3] and torch.equal(torch.cat(unshuffled), y)


def test_iterate_batches_augment_keeps_labels():
    d = make_synthetic(40, 8, (3, 8, 8), 4)
    batches = list(iterate_batches(d.x_train, d.y_train, 16, augment="crop_flip",
                                   generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.cat([yb for _, yb in batches]), d.y_train)
    assert all(xb.shape[1:] == (3, 8, 8) for xb, _ in batches)
    with pytest.raises(NnqError):
        next(iterate_batches(d.x_train, d.y_train, 16, augment="mixup"))


def test_unpacked_cifar10_jpeg_decodes_in_class_order_and_caches(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("NNQ_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data" / "CIFAR-10-images"
    for split, n in (("train", 3), ("test", 2)):
        for k, cls in enumerate(("b_cls", "a_cls")):  # created out of order: labels follow sorted names
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (6, 6), (40 * k, 10 * i, 255)).save(root / split / cls / f"{i}.png")
    a = load_dataset("cifar10_jpeg", tmp_path / "data", normalize="none", val_size=0)
    assert a.x_train.shape == (6, 3, 6, 6) and a.x_test.shape == (4, 3, 6, 6) and a.num_classes == 2
    assert a.y_train.tolist() == [0, 0, 0, 1, 1, 1] and a.augment == "crop_flip"
    # "a_cls" (label 0) was drawn with red 40, "b_cls" with red 0
    assert torch.allclose(a.x_train[0, 0], torch.full((6, 6), 40 / 255)) and a.x_train[3, 0].max() == 0
    assert len(list((tmp_path / "cache" / "decoded").glob("*.pt"))) == 1
    b = load_dataset("cifar10_jpeg", tmp_path / "data", normalize="none", val_size=0)  # from the cache
    assert torch.equal(a.x_train, b.x_train)


def _write_cifar100(base: Path, n_train: int = 60, n_test: int = 20) -> dict:
    """The official python release's format: pickled dicts with 'data' (N, 3072) uint8 and 'fine_labels'."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    base.mkdir(parents=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        entry = {"filenames": [f"img_{i}.png" for i in range(n)], "batch_label": f"{name} batch",
                 "fine_labels": rng.integers(0, 100, n).tolist(), "coarse_labels": rng.integers(0, 20, n).tolist(),
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        (base / name).write_bytes(pickle.dumps(entry, protocol=2))
        out[name] = entry
    (base / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)],
                                              "coarse_label_names": [f"s{i}" for i in range(20)]}, protocol=2))
    return out


def test_cifar100_reads_the_official_pickles(tmp_path, offline):
    raw = _write_cifar100(tmp_path / "cifar-100-python")
    d = load_dataset("cifar100", tmp_path, normalize="none", val_size=10)
    assert d.num_classes == 100 and d.input_shape == (3, 32, 32) and d.label == "CIFAR-100"
    assert d.x_train.shape == (50, 3, 32, 32) and d.x_val.shape == (10, 3, 32, 32) and d.x_test.shape == (20, 3, 32, 32)
    assert d.y_test.tolist() == raw["test"]["fine_labels"]
    # pixel (c, h, w) of image i is data[i, c * 1024 + h * 32 + w]
    want = torch.from_numpy(raw["test"]["data"]).view(20, 3, 32, 32).float() / 255
    assert torch.allclose(d.x_test, want)
    assert sorted(d.y_train.tolist() + d.y_val.tolist()) == sorted(raw["train"]["fine_labels"])
    # default normalisation: the statistics of the (carved) training images themselves
    n = load_dataset("cifar100", tmp_path, val_size=10)
    assert n.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-4 and (n.x_train.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2


def _write_svhn(folder: Path, name: str, n: int, seed: int):
    import numpy as np
    import scipy.io as sio

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # the files' layout: (H, W, C, N)
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # 1..10, 10 is the digit 0
    y[:3, 0] = [10, 1, 9]
    folder.mkdir(parents=True, exist_ok=True)
    sio.savemat(str(folder / name), {"X": x, "y": y})
    return x, y


def test_svhn_reads_the_mat_files_and_maps_label_10_to_digit_0(tmp_path, offline):
    x_tr, y_tr = _write_svhn(tmp_path / "svhn", "train_32x32.mat", 40, 0)
    x_te, y_te = _write_svhn(tmp_path / "svhn", "test_32x32.mat", 12, 1)
    d = load_dataset("svhn", tmp_path, normalize="none", val_size=5)
    assert d.num_classes == 10 and d.x_test.shape == (12, 3, 32, 32) and d.x_train.shape == (35, 3, 32, 32)
    assert d.y_test[:3].tolist() == [0, 1, 9] and set(d.y_test.tolist()) <= set(range(10))
    assert d.y_test.tolist() == [0 if v == 10 else int(v) for v in y_te[:, 0]]
    # image i, channel c, row h, column w is X[h, w, c, i]
    assert torch.allclose(d.x_test[4], torch.from_numpy(x_te[:, :, :, 4]).permute(2, 0, 1).float() / 255)
    _write_svhn(tmp_path / "svhn", "extra_32x32.mat", 30, 2)
    e = load_dataset("svhn_extra", tmp_path, normalize="none", val_size=5)
    assert len(e.x_train) + len(e.x_val) == 70 and e.label == "SVHN (train + extra)"


@pytest.mark.parametrize("name, files, folder", [
    ("cifar100", ["train", "test"], "cifar-100-python"),
    ("svhn", ["train_32x32.mat", "test_32x32.mat"], "svhn"),
    ("svhn_extra", ["train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"], "svhn"),
])
def test_missing_cifar100_and_svhn_offline_name_the_files_and_dir(name, files, folder, tmp_path, offline):
    with pytest.raises(NnqError) as e:
        load_dataset(name, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / folder) in msg
    assert all(f in msg for f in files)


def test_find_weights_looks_in_the_weights_dir_then_beside_the_data_and_says_where_it_looked(tmp_path, monkeypatch):
    rel = Path("lab") / "net.th"
    monkeypatch.delenv("NNQ_WEIGHTS_DIR", raising=False)
    (tmp_path / "weights" / "lab").mkdir(parents=True)
    (tmp_path / "weights" / rel).write_bytes(b"x")
    (tmp_path / "data").mkdir()
    assert find_weights(rel, data_dir=tmp_path / "data").resolve() == (tmp_path / "weights" / rel).resolve()
    other = tmp_path / "other"
    (other / "lab").mkdir(parents=True)
    (other / rel).write_bytes(b"y")
    monkeypatch.setenv("NNQ_WEIGHTS_DIR", str(other))
    assert find_weights(rel, data_dir=tmp_path / "data") == other / rel  # $NNQ_WEIGHTS_DIR before the data's
    assert find_weights(tmp_path / "weights" / rel) == tmp_path / "weights" / rel  # an existing path as given
    with pytest.raises(NnqError, match="--weights-dir"):
        find_weights("lab/missing.th", data_dir=tmp_path / "data")
