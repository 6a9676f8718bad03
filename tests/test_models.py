"""Tests of common.models: parameter counts, shapes, gradients, strict loading of the shared weights, accuracy."""

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from common.data import iterate_batches, load_dataset
from common.errors import NnqError
from common.models import (
    MLP,
    BnnConvNet,
    LeNet5,
    LeNet300100,
    ResNetCifar,
    shortcut_a,
    build_model,
    load_lenet5_mnist,
    load_resnet_cifar,
    resnet20,
    resnet56,
)

RESNET20 = "akamaster-pytorch_resnet_cifar10/resnet20-12fca82f.th"
LENET5 = "csinva-gan-vae-pretrained-pytorch/lenet_epoch=12_test_acc=0.991.pth"
# Measured accuracies of the shared weights, from weights/SOURCES.md.
RESNET20_JPEG_ACC = 81.0
LENET5_MNIST_ACC = 99.07


def _weights(rel: str) -> Path:
    root = os.environ.get("NNQ_WEIGHTS_DIR")
    if not root and os.environ.get("NNQ_DATA_DIR"):
        root = str(Path(os.environ["NNQ_DATA_DIR"]) / ".." / "weights")
    path = Path(root) / rel if root else None
    if path is None or not path.is_file():
        pytest.skip(f"shared weights {rel} not found (set NNQ_WEIGHTS_DIR or NNQ_DATA_DIR)")
    return path


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@torch.inference_mode()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    # batches of 250 keep ResNet-20's activations in cache: ~2x faster than 1000 on one CPU thread
    correct = sum((model(xb).argmax(1) == yb).sum().item() for xb, yb in iterate_batches(x, y, 250))
    return 100.0 * correct / len(y)


def test_param_counts_lenets():
    assert _n_params(LeNet300100()) == 266_610
    assert _n_params(LeNet5()) == 61_706


def test_resnet20_param_count_equals_checkpoint():
    ckpt = torch.load(_weights(RESNET20), map_location="cpu", weights_only=True)["state_dict"]
    trainable = sum(v.numel() for k, v in ckpt.items() if not k.endswith(("running_mean", "running_var")))
    assert _n_params(resnet20()) == trainable
    assert 0.26e6 < trainable < 0.28e6  # "0.27M" in the repository's table


def test_resnet_depths_and_bad_depth():
    counts = [_n_params(ResNetCifar(d)) for d in (20, 32, 44, 56)]
    assert counts == sorted(counts) and 0.84e6 < counts[-1] < 0.86e6  # ResNet-56 "0.85M"
    with pytest.raises(NnqError):
        ResNetCifar(21)


@pytest.mark.parametrize(
    "name,shape,kw",
    [
        ("mlp", (1, 8, 8), {"hidden": (32, 16)}),
        ("mlp", (1, 8, 8), {"hidden": (32,), "dropout": 0.1, "dropout_in": 0.1, "out_bn": True}),
        ("lenet300", (1, 28, 28), {}),
        ("lenet5", (1, 32, 32), {}),
        ("bnn_convnet", (3, 32, 32), {}),
        ("bnn_convnet", (3, 16, 16), {"out_bn": True, "act": nn.Hardtanh}),
        ("resnet20", (3, 32, 32), {}),
    ],
)
def test_builders_shape_and_gradients(name, shape, kw):
    torch.manual_seed(0)
    model = build_model(name, shape, 10, **kw).train()
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_act_factory_is_used():
    m = MLP(64, (8, 8), 10, act=nn.Tanh)
    assert sum(isinstance(x, nn.Tanh) for x in m.modules()) == 2
    c = BnnConvNet(act=nn.Hardtanh)
    assert sum(isinstance(x, nn.Hardtanh) for x in c.modules()) == 8 and not any(
        isinstance(x, nn.ReLU) for x in c.modules())
    # BNN convs / hidden FCs carry no bias (BN follows); final layer has a bias only without out_bn
    assert all(x.bias is None for x in c.features if isinstance(x, nn.Conv2d))
    assert c.classifier[-1].bias is not None and BnnConvNet(out_bn=True).classifier[-2].bias is None


def test_build_model_errors():
    with pytest.raises(NnqError, match="known"):
        build_model("vgg19", (3, 32, 32), 10)
    with pytest.raises(NnqError, match="resize=32"):
        build_model("lenet5", (1, 28, 28), 10)


def test_option_a_shortcut_has_no_parameters_and_pads_channels():
    m = resnet56()
    assert not any("shortcut" in k or "downsample" in k for k in m.state_dict())
    block = m.layer2[0]
    x = torch.randn(2, 16, 8, 8)
    s = shortcut_a(x, block.planes)  # [2, 32, 4, 4]
    assert s.shape == (2, 32, 4, 4)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2]) and s[:, :8].abs().sum() == 0 and s[:, 24:].abs().sum() == 0


def test_load_resnet20_strict_and_mismatch_errors(tmp_path):
    path = _weights(RESNET20)
    m = load_resnet_cifar(20, path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(m.layer3[2].conv2.weight, ckpt["module.layer3.2.conv2.weight"])
    assert not m.training
    with pytest.raises(NnqError, match="missing keys"):
        load_resnet_cifar(32, path)
    with pytest.raises(NnqError, match="unexpected keys"):
        load_resnet_cifar(20, path.parent / "resnet56-4bfd9763.th")  # ResNet-56 keys into ResNet-20
    bad = tmp_path / "trunc.th"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(NnqError, match="truncated"):
        load_resnet_cifar(20, bad)


def test_load_lenet5_strict_and_shape_mismatch(tmp_path):
    path = _weights(LENET5)
    m = load_lenet5_mnist(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert set(sd) == set(m.state_dict()) and torch.equal(m.fc.f7.bias, sd["fc.f7.bias"])
    sd["fc.f7.weight"] = torch.zeros(5, 84)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(NnqError, match="shape mismatch"):
        load_lenet5_mnist(tmp_path / "bad.pth")


def test_lenet5_mnist_accuracy():
    path = _weights(LENET5)
    try:
        data = load_dataset("mnist", resize=32, normalize="none", limit_train=1, download=False)
    except NnqError:
        pytest.skip("MNIST not in $NNQ_DATA_DIR")
    acc = _accuracy(load_lenet5_mnist(path), data.x_test, data.y_test)
    assert abs(acc - LENET5_MNIST_ACC) <= 0.3, acc


def test_resnet20_cifar10_jpeg_accuracy():
    path = _weights(RESNET20)
    try:
        data = load_dataset("cifar10_jpeg", normalize="imagenet", limit_train=1, download=False)
    except NnqError:
        pytest.skip("cifar10_jpeg not in $NNQ_DATA_DIR")
    assert data.label == "CIFAR-10 (JPEG q75)"
    acc = _accuracy(load_resnet_cifar(20, path), data.x_test, data.y_test)
    assert abs(acc - RESNET20_JPEG_ACC) <= 2.0, acc


def test_lenet5_caffe_param_count_and_shape():
    from common.models import LeNet5Caffe

    m = build_model("lenet5_caffe", (1, 28, 28), 10)
    assert isinstance(m, LeNet5Caffe)
    # Caffe's MNIST LeNet: 20*25+20 + 50*20*25+50 + 800*500+500 + 500*10+10 (Deep Compression Table 3: 431K)
    assert _n_params(m) == 431_080
    layers = [n for n, x in m.named_modules() if isinstance(x, (nn.Conv2d, nn.Linear))]
    assert layers == ["conv1", "conv2", "ip1", "ip2"]
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert not any(isinstance(x, nn.ReLU) for x in (m.conv1, m.pool1, m.conv2, m.pool2))  # no ReLU after convs
    with pytest.raises(NnqError):
        build_model("lenet5_caffe", (1, 28, 20), 10)


def test_load_state_file_round_trips_and_refuses_a_foreign_or_missing_file(tmp_path):
    # both file kinds load exactly; a file made for another network, a truncated file and a missing one are each
    # one NnqError that names the file
    from safetensors.torch import save_file

    from common.models import SmallConvNet, load_state_file

    torch.manual_seed(0)
    src = SmallConvNet(1, 10, 8)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "w.pt")
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    x = torch.randn(2, 1, 8, 8)
    for name in ("w.pt", "w.safetensors"):
        dst = load_state_file(SmallConvNet(1, 10, 8), tmp_path / name, "the float smallconv")
        assert torch.equal(dst(x), src.eval()(x))
    with pytest.raises(NnqError, match="does not match the float smallconv"):
        load_state_file(SmallConvNet(1, 3, 8), tmp_path / "w.pt", "the float smallconv")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    for name in ("bad.safetensors", "missing.safetensors", "missing.pt"):
        with pytest.raises(NnqError, match=name):
            load_state_file(SmallConvNet(1, 10, 8), tmp_path / name, "the float smallconv")


def test_load_float_weights_reads_plain_and_dataparallel_files_into_a_training_model(tmp_path):
    # the float start of the paper presets (lsq, lqnets, dorefa): a plain state dict and one saved from
    # DataParallel (akamaster's layout: {"state_dict": {"module.<key>": ...}}) load exactly, in train mode
    from common.models import load_float_weights

    torch.manual_seed(0)
    src = resnet20()
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "dp.th")
    x = torch.randn(2, 3, 32, 32)
    for name in ("plain.pt", "dp.th"):
        dst = load_float_weights(resnet20(), tmp_path / name, "the float resnet20")
        assert dst.training
        assert torch.equal(dst.eval()(x), src.eval()(x))
    with pytest.raises(NnqError, match="does not match the float resnet56"):
        load_float_weights(resnet56(), tmp_path / "dp.th", "the float resnet56")


class _ScaledConv(nn.Conv2d):
    """A stand-in for a paper's quantized conv: its own state (a step ``s``, a buffer) beside the float layer's;
    ``scale`` 1 (off) computes exactly the float layer."""

    def __init__(self, *args, scale: float = 1.0, **kw):
        super().__init__(*args, **kw)
        self.s = nn.Parameter(torch.tensor(scale))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        return self._conv_forward(x, self.weight * self.s, self.bias)


class _ScaledLinear(nn.Linear):
    def __init__(self, in_features, out_features, bias=True, *, scale: float = 1.0):
        super().__init__(in_features, out_features, bias=bias)
        self.s = nn.Parameter(torch.tensor(scale))

    def forward(self, x):
        return nn.functional.linear(x, self.weight * self.s, self.bias)


@pytest.mark.parametrize("make, cls, shape", [
    (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=False, padding_mode="reflect"),
     _ScaledConv, (2, 4, 9, 9)),
    (lambda: nn.Conv2d(3, 5, (1, 3), padding=(0, 1)), _ScaledConv, (2, 3, 6, 6)),
    (lambda: nn.Linear(7, 5), _ScaledLinear, (3, 7)),
    (lambda: nn.Linear(7, 5, bias=False), _ScaledLinear, (3, 7)),
])
def test_from_float_layer_copies_every_parameter_and_buffer_and_computes_as_the_float_layer(make, cls, shape):
    from common.models import from_float_layer

    torch.manual_seed(0)
    m = make()
    q = from_float_layer(cls, m)
    assert type(q) is cls
    own = dict(q.state_dict())
    for k, v in m.state_dict().items():  # every float tensor copied (equal), not shared
        assert torch.equal(own[k], v) and own[k].data_ptr() != v.data_ptr(), k
    assert q.s.item() == 1.0  # the subclass's own state keeps its constructor's value
    x = torch.randn(*shape)
    assert torch.equal(q(x), m(x))  # quantization off: exactly the float layer
    assert repr(q).split("(", 1)[1] == repr(m).split("(", 1)[1]  # same constructor arguments
    assert not torch.equal(from_float_layer(cls, m, scale=0.5)(x), m(x))  # keywords reach the constructor


def test_from_float_layer_refuses_state_the_subclass_cannot_hold_and_other_layers():
    from common.models import from_float_layer

    bn_like = nn.Linear(3, 2)
    bn_like.register_buffer("running_mean", torch.zeros(2))
    with pytest.raises(TypeError, match="running_mean"):
        from_float_layer(_ScaledLinear, bn_like)
    with pytest.raises(TypeError, match="Conv2d or nn.Linear"):
        from_float_layer(_ScaledLinear, nn.BatchNorm2d(3))


@pytest.mark.parametrize("module, conv, linear, off", [
    ("papers.lsq.lsq", "LsqConv2d", "LsqLinear", {"w_bits": None, "a_bits": None}),
    ("papers.lqnets.lqnets", "LqConv2d", "LqLinear", {"w_bits": None, "a_bits": None}),
    ("papers.dorefa.dorefa", "DorefaConv2d", "DorefaLinear", {"w_bits": 32, "a_bits": 32, "g_bits": 32}),
])
def test_every_papers_from_float_with_quantization_off_is_the_float_layer(module, conv, linear, off):
    # the papers' from_float go through common.models.from_float_layer: with no bits, the quantized layer holds the
    # float layer's tensors under the same keys and computes exactly what it computes
    import importlib

    mod = importlib.import_module(module)
    torch.manual_seed(0)
    for m, cls, x in ((nn.Conv2d(3, 4, 3, stride=2, padding=1), getattr(mod, conv), torch.rand(2, 3, 8, 8)),
                      (nn.Linear(6, 5), getattr(mod, linear), torch.rand(3, 6))):
        q = cls.from_float(m, **off)
        assert isinstance(q, type(m))
        own = q.state_dict()
        assert all(torch.equal(own[k], v) for k, v in m.state_dict().items())
        assert torch.equal(q(x), m(x))
