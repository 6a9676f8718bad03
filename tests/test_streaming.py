"""Streamed image folders (common.data.FolderData): labels, formats, corrupt files, determinism, resume, sharding."""

import random
import warnings

import numpy as np
import pytest
import torch

from common.data import (FolderData, FolderRecipe, SkippedImageWarning, load_dataset, load_image_folder,
                         make_image_folder, random_resized_crop_box)
from common.errors import NnqError

SMALL = ((50, 37), (37, 50), (32, 24), (13, 9), (25, 30))
"""Image sizes of the test folder (width, height): small, so that a pass takes milliseconds."""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet"), classes=4, per_class=7, test_per_class=3,
                             sizes=SMALL)


def _load(folder, **kw) -> FolderData:
    kw = {"workers": 0, "val_size": 2, "recipe": FolderRecipe(image_size=16, eval_resize=18), **kw}
    return load_image_folder(folder, **kw)


def _quiet(it):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        return list(it)


def test_labels_follow_torchvision_imagefolder_in_class_order(folder):
    from torchvision.datasets import ImageFolder

    d = _load(folder)
    assert d.classes == [f"n{k:08d}" for k in range(4)] and d.num_classes == 4 and d.input_shape == (3, 16, 16)
    ref_test = ImageFolder(str(folder / "val")).samples
    assert list(zip(d.files("test"), d.labels("test").tolist())) == [(p, k) for p, k in ref_test]
    ref_train = dict(ImageFolder(str(folder / "train")).samples)  # the carved val split comes from train/
    mine = dict(zip(d.files("train") + d.files("val"), d.labels("train").tolist() + d.labels("val").tolist()))
    assert mine == ref_train
    assert sum(p.endswith(".JPEG") for p in mine) >= 4 and sum(p.endswith(".PNG") for p in mine) >= 2


def test_every_colour_mode_and_format_becomes_rgb(folder):
    from PIL import Image

    from common.data import _open_rgb

    modes = {}
    for p in _load(folder).files("test"):
        if "truncated" not in p:
            with Image.open(p) as im:
                modes.setdefault(im.mode, p)
    assert set(modes) == {"RGB", "L", "CMYK", "RGBA", "P"}
    for mode, p in modes.items():
        rgb = np.asarray(_open_rgb(p))
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        if mode == "L":
            assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_corrupt_and_truncated_files_are_skipped_named_and_counted(folder):
    d = _load(folder)
    corrupt = str(folder / "train" / "n00000000" / "corrupt_00000.JPEG")
    assert corrupt in d.files("train")
    with pytest.warns(SkippedImageWarning, match="corrupt_00000.JPEG"):
        seen = sum(len(y) for _, y in d.train_batches(epoch=1, seed=0, batch_size=8))
    assert seen == d.n_train - 1 and d.skipped_images == [corrupt]
    with pytest.warns(SkippedImageWarning, match="truncated_00000.jpg"):
        xs = [x for x, _ in d.eval_batches("test", 5)]
    assert sum(len(x) for x in xs) == d.split_size("test") - 1 and len(d.skipped_images) == 2
    assert all(x.shape[1:] == (3, 16, 16) and torch.isfinite(x).all() for x in xs)
    with warnings.catch_warnings():  # met again: counted once, warned once
        warnings.simplefilter("error", SkippedImageWarning)
        ones = list(d.train_batches(epoch=2, seed=0, batch_size=1))
        assert len(list(d.eval_batches("test", 1))) == d.split_size("test") - 1
    assert len(d.skipped_images) == 2
    # a training batch left empty repeats its neighbour: every process of a DDP run takes the same steps
    assert len(ones) == d.n_train == d.train_steps_per_epoch(1)
    assert any(torch.equal(a[0], b[0]) for a, b in zip(ones, ones[1:]))


def test_same_batches_with_0_and_2_workers(folder):
    a = _quiet(_load(folder, workers=0).train_batches(epoch=3, seed=7, batch_size=6))
    d2 = _load(folder, workers=2)
    for _ in d2.train_batches(epoch=3, seed=7, batch_size=6):
        break  # a pass left in the middle (fit's --max-steps) does not disturb the next one
    b = _quiet(d2.train_batches(epoch=3, seed=7, batch_size=6))
    assert len(a) == len(b) == 5
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    c = _quiet(d2.train_batches(epoch=4, seed=7, batch_size=6))  # the persistent workers serve the next epoch
    assert not torch.equal(torch.cat([y for _, y in c]), torch.cat([y for _, y in b]))
    d2.close()


def test_skip_resumes_exactly_the_remaining_batches_and_epochs_differ(folder):
    d = _load(folder)
    full = _quiet(d.train_batches(epoch=2, seed=3, batch_size=4))
    rest = _quiet(d.train_batches(epoch=2, seed=3, batch_size=4, skip=4))
    assert len(rest) == len(full) - 4
    for (xa, ya), (xb, yb) in zip(full[4:], rest):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert d.train_steps_per_epoch(4) == -(-d.n_train // 4)
    again = _quiet(d.train_batches(epoch=2, seed=3, batch_size=4))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full, again))
    other = _quiet(d.train_batches(epoch=3, seed=3, batch_size=4))
    assert not torch.equal(full[0][0], other[0][0])


def _rows(batches) -> list[bytes]:
    return [r.numpy().tobytes() for x, _ in batches for r in x]


def test_rank_shards_are_disjoint_and_cover_the_epoch(folder):
    d = _load(folder, val_size=1, recipe=FolderRecipe(image_size=16, eval_resize=18, train_augment=False))
    everything = _rows(_quiet(d.eval_batches("train", 8)))  # one row per readable image
    shards = [_rows(_quiet(d.train_batches(epoch=1, seed=0, batch_size=3, rank=r, world=3))) for r in range(3)]
    per = d.n_train // 3
    assert d.train_steps_per_epoch(3, world=3) == -(-per // 3)
    assert all(len(s) in (per, per - 1) for s in shards)  # one shard may hold the corrupt file
    flat = [r for s in shards for r in s]
    assert len(set(flat)) == len(flat) and set(flat) <= set(everything)
    assert len(flat) >= len(everything) - (d.n_train - 3 * per)  # only the remainder of n / world is dropped
    one = _rows(_quiet(d.train_batches(epoch=1, seed=0, batch_size=5)))
    assert sorted(one) == sorted(everything)


def test_eval_recipe_is_resize_256_then_center_crop_224(tmp_path):
    from torchvision.transforms import v2

    root = make_image_folder(tmp_path, classes=2, per_class=2, test_per_class=1, sizes=((500, 375), (375, 500)),
                             formats="jpeg", corrupt=False)
    d = load_image_folder(root, workers=0, val_size=0)
    (x, y), = list(d.eval_batches("test", 8))
    assert x.shape == (2, 3, 224, 224)
    ref = v2.Compose([v2.Resize(256), v2.CenterCrop(224), v2.PILToTensor()])
    mean, std = torch.tensor(d.recipe.mean).view(3, 1, 1), torch.tensor(d.recipe.std).view(3, 1, 1)
    from common.data import _open_rgb

    for i, path in enumerate(d.files("test")):
        want = ref(_open_rgb(path)).float()
        assert torch.allclose((x[i] * std + mean) * 255, want, atol=1e-3)


def test_train_crop_is_torchvision_resized_crop_of_a_per_sample_box(folder):
    import torchvision.transforms.v2.functional as TF

    from common.data import _mix, _open_rgb

    d = _load(folder, val_size=0, recipe=FolderRecipe(image_size=24, eval_resize=28))
    (x, y), = _quiet(d.train_batches(epoch=5, seed=1, batch_size=64))
    order = torch.randperm(d.n_train, generator=torch.Generator().manual_seed(_mix(1, 5))).tolist()
    order = [i for i in order if "corrupt" not in d.files("train")[i]]
    for row, i in list(enumerate(order))[:6]:
        img = _open_rgb(d.files("train")[i])
        rng = random.Random(_mix(_mix(1, 5), i))
        top, left, h, w = random_resized_crop_box(img.height, img.width, rng)
        want = TF.pil_to_tensor(TF.resized_crop(img, top, left, h, w, [24, 24], antialias=True))
        want = want.flip(-1) if rng.random() < 0.5 else want
        got = x[row] * torch.tensor(d.recipe.std).view(3, 1, 1) + torch.tensor(d.recipe.mean).view(3, 1, 1)
        assert torch.allclose(got * 255, want.float(), atol=1e-3) and y[row] == d.labels("train")[i]


def test_random_resized_crop_box_stays_inside_with_the_asked_area_and_aspect():
    rng = random.Random(0)
    for _ in range(2000):
        h, w = rng.randint(5, 600), rng.randint(5, 600)
        top, left, ch, cw = random_resized_crop_box(h, w, rng)
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
    for _ in range(200):  # a square image never needs the fallback: area share and aspect as asked (up to rounding)
        top, left, ch, cw = random_resized_crop_box(400, 400, rng)
        assert 0.08 * 0.95 <= ch * cw / 400**2 <= 1 and 3 / 4 * 0.95 <= cw / ch <= 4 / 3 * 1.05
    from torchvision.transforms import v2

    for h, w in ((10, 1000), (1000, 10)):  # no try fits: torchvision's central fallback with the ratio clamped
        ref = v2.RandomResizedCrop(5).make_params([torch.zeros(1, h, w)])
        assert random_resized_crop_box(h, w, rng) == (ref["top"], ref["left"], ref["height"], ref["width"])


def test_val_split_is_carved_from_train_fixed_and_disjoint(folder):
    a, b = _load(folder, val_size=None), _load(folder, val_size=None)
    n = a.n_train + a.split_size("val")
    assert a.split_size("val") == max(1, int(n * 0.02)) and a.files("val") == b.files("val")
    assert not set(a.files("val")) & set(a.files("train"))
    c = _load(folder, val_size=5)
    assert c.split_size("val") == 5 and not set(c.files("val")) & set(c.files("train"))
    assert c.n_train + 5 == n and not _load(folder, val_size=0).has_split("val")
    lim = _load(folder, val_size=5, limit_train=10, limit_test=3)
    assert lim.n_train == 10 and lim.split_size("val") == 3 and lim.split_size("test") == 3
    assert set(lim.files("train")) <= set(c.files("train")) and set(lim.files("val")) <= set(c.files("val"))
    with pytest.raises(NnqError, match="val_size"):
        _load(folder, val_size=n)


def test_train_and_test_layout_and_bad_layouts(tmp_path):
    root = make_image_folder(tmp_path / "tt", classes=2, per_class=3, test_per_class=1, sizes=SMALL,
                             split_names=("train", "test"), corrupt=False)
    first = next((root / "train" / "n00000000").iterdir())
    (root / "train" / "n00000000" / f"bild_ü{first.suffix}").write_bytes(first.read_bytes())  # a non-ASCII name
    d = _load(root, val_size=1)
    assert d.test_dir == "test" and d.split_size("test") == 2 and d.n_train == 6
    assert sum(len(y) for _, y in d.train_batches(epoch=1, seed=0, batch_size=4)) == 6
    with pytest.raises(NnqError, match=r"train/<class>/ and val/<class>/"):
        _load(tmp_path / "nowhere")
    loose = tmp_path / "loose"
    make_image_folder(loose, classes=2, per_class=2, test_per_class=1, sizes=SMALL, corrupt=False)
    for f in (loose / "val").rglob("*.*"):
        f.rename(loose / "val" / f.name)
    for sub in (loose / "val").iterdir():
        if sub.is_dir():
            sub.rmdir()
    with pytest.raises(NnqError, match="sort them into <class>/"):
        _load(loose)
    (loose / "val" / "n00000009").mkdir()
    (loose / "val" / "n00000009" / "a.png").write_bytes(b"")
    with pytest.raises(NnqError, match=r"n00000009.*no train/ folder"):
        _load(loose)


def test_a_streamed_set_has_no_tensors_and_says_what_to_use(folder):
    d = _load(folder)
    with pytest.raises(NnqError, match="evaluate_split"):
        d.x_test
    assert not hasattr(d, "x_train") and d.streaming and d.to("cpu") is d


def test_load_dataset_streams_image_folders_and_says_so(folder, capsys, monkeypatch):
    monkeypatch.delenv("NNQ_PROGRESS", raising=False)
    d = load_dataset(f"imagefolder:{folder}", resize=20, normalize="none", workers=0, val_size=1)
    assert isinstance(d, FolderData) and d.input_shape == (3, 20, 20) and d.recipe.eval_resize == 23
    assert "streaming from" in capsys.readouterr().err
    x, _ = _quiet(d.eval_batches("test", 4))[0]
    assert 0 <= x.min() and x.max() <= 1
    s = load_dataset(f"imagefolder:{folder}", image_size=32, eval_resize=40, mean=(0.5,) * 3, std=(0.25,) * 3,
                     workers=0)
    assert s.recipe.image_size == 32 and s.recipe.eval_resize == 40 and s.recipe.std == (0.25,) * 3
    load_dataset("synthetic")
    assert "in memory" in capsys.readouterr().err
    monkeypatch.setenv("NNQ_PROGRESS", "0")
    load_dataset("synthetic")
    assert capsys.readouterr().err == ""


def test_fit_learns_the_classes_of_a_streamed_folder(folder):
    from torch import nn

    from common.evaluate import evaluate_split
    from common.train import fit, seed_everything

    d = _load(folder, val_size=2)
    seed_everything(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))  # the classes differ in colour
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        res = fit(model, d, optimizer=opt, batch_size=8, epochs=8, eval_batch_size=8)
        test = evaluate_split(model, d, "test", batch_size=8)
    assert res["steps"] == 8 * d.train_steps_per_epoch(8) and res["val"] is not None
    assert test["n"] == d.split_size("test") - 1 and test["top1"] >= 75.0  # chance: 25%
