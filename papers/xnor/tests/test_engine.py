"""The whole-network engine (engine.py): logits bit-identical to the simulated model, the BatchNorm + sign fold,
refusals, and zero -> +1 in every packer."""

import ctypes

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError
from common.models import MLP, BnnConvNet
from papers.xnor import kernel
from papers.xnor.engine import PackArgs, library, sign_thresholds, to_engine
from papers.xnor.models import build
from papers.xnor.packed import convert_to_packed
from papers.xnor.xnor import XnorConv2d, XnorLinear, binarize


class _Sign(nn.Module):
    """Sign as papers/bnn defines it (BNN Eq. (1): sign(0) = +1); a local twin (papers do not import each other)."""

    act_bits = 1

    def forward(self, x):
        return torch.where(x >= 0, 1.0, -1.0)


class _BinLinear(nn.Linear):
    weight_bits = 1

    def forward(self, x):
        return F.linear(x, binarize(self.weight), self.bias)


class _BinConv(nn.Conv2d):
    weight_bits = 1

    def forward(self, x):
        return self._conv_forward(x, binarize(self.weight), self.bias)


def _binarize_weights_(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if type(child) is nn.Linear:
            new = _BinLinear(child.in_features, child.out_features, bias=child.bias is not None)
        elif type(child) is nn.Conv2d:
            new = _BinConv(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                           bias=child.bias is not None)
        else:
            _binarize_weights_(child)
            continue
        new.load_state_dict(child.state_dict())
        setattr(model, name, new)
    return model


def _trained_like_(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorm as after training, with scales of both signs, non-zero means and biases."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.weight.data = torch.randn(n, generator=g)
            m.bias.data = torch.randn(n, generator=g) * 0.5
            m.running_mean = torch.randn(n, generator=g) * 2
            m.running_var = torch.rand(n, generator=g) * 3 + 0.2
    return model.eval()


def _assert_exact(model: nn.Module, shape: tuple[int, ...], batches=(1, 3), seed: int = 0) -> None:
    eng = to_engine(model)
    g = torch.Generator().manual_seed(seed)
    for b in batches:
        x = torch.randn(b, *shape, generator=g)
        x[0, ..., 0] = 0.0  # exact zeros on the input
        with torch.no_grad():
            ref = model(x)
        out = eng(x)
        assert torch.equal(out, ref), f"batch {b}: max |diff| {(out - ref).abs().max()}"


@pytest.mark.parametrize("arch,shape,classes", [
    ("smallconv", (1, 8, 8), 10), ("lenet5", (1, 32, 32), 10), ("bnnconv", (3, 8, 8), 10),
    ("resnet20", (3, 16, 16), 10), ("resnet18", (3, 32, 32), 7)])
def test_xnor_nets_bit_identical_to_simulated(arch, shape, classes):
    torch.manual_seed(0)
    _assert_exact(_trained_like_(build(arch, "xnor", shape, classes)), shape)


def test_xnor_sequential_odd_channels_stride_padding_bias():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 37, 3, padding=1), nn.BatchNorm2d(37), nn.ReLU(), nn.BatchNorm2d(37),
        XnorConv2d(37, 70, 3, stride=2, padding=1, bias=True), nn.MaxPool2d(2),
        nn.BatchNorm2d(70), XnorConv2d(70, 5, (3, 2), stride=(1, 2), padding=(1, 1)),
        nn.BatchNorm2d(5), XnorConv2d(5, 129, 1),
        nn.MaxPool2d(2, 1), nn.Flatten(), nn.BatchNorm1d(129 * 8), XnorLinear(129 * 8, 33),
        nn.BatchNorm1d(33), nn.Linear(33, 4))
    _assert_exact(_trained_like_(net), (3, 19, 17))


def test_bnn_mlp_odd_widths_bit_identical():
    torch.manual_seed(2)
    mlp = MLP(7 * 9, (37, 129, 64), 10, act=_Sign, batchnorm=True, out_bn=True, dropout=0.1)
    _assert_exact(_trained_like_(_binarize_weights_(mlp)), (1, 7, 9), batches=(1, 2, 5))


def test_bnn_convnet_with_pooling_on_bits_bit_identical():
    torch.manual_seed(3)
    net = _trained_like_(_binarize_weights_(BnnConvNet(3, 10, act=_Sign, out_bn=True, image_size=8)))
    _assert_exact(net, (3, 8, 8), batches=(1, 2))


def test_bnn_sequential_odd_channels_stride2():
    torch.manual_seed(4)
    net = nn.Sequential(
        _BinConv(2, 11, 3, padding=1, bias=True), nn.BatchNorm2d(11), _Sign(),
        _BinConv(11, 67, 3, stride=2, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(67), _Sign(),
        _BinConv(67, 9, 2, bias=False), nn.BatchNorm2d(9), _Sign(), nn.Flatten(),
        _BinLinear(9 * 2 * 2, 6, bias=False), nn.BatchNorm1d(6))
    _assert_exact(_trained_like_(net), (2, 13, 12), batches=(1, 4))


def test_fused_threshold_equals_batchnorm_sign_on_every_count_and_at_the_boundary():
    # eps = 0, var = 1, mean = 3: BN(c) = gamma (c - 3) + beta with gamma a power of two is exact, so BN(3) = 0
    bn = nn.BatchNorm1d(6, eps=0.0).eval()
    bn.weight.data = torch.tensor([0.5, -2.0, 0.0, 0.0, 1.3, -0.7])
    bn.bias.data = torch.tensor([0.0, 0.0, -1.0, 1.0, 0.2, -0.4])
    bn.running_mean = torch.tensor([3.0, 3.0, 0.0, 0.0, -2.1, 5.5])
    bn.running_var = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.37, 2.0])
    kbits = 9
    T, inc = sign_thresholds(bn, kbits)
    c = torch.arange(-kbits, kbits + 1, dtype=torch.float32)
    with torch.no_grad():
        ref = bn(c.view(-1, 1).expand(-1, 6).contiguous()) >= 0           # sign(0) = +1 (XNOR-Net Eq. (1))
    folded = torch.where(inc.bool(), c.view(-1, 1) >= T.float(), c.view(-1, 1) <= T.float())
    assert torch.equal(folded, ref)
    # by hand: BN(3) = 0 -> +1; gamma > 0: +1 iff c >= 3; gamma < 0 flips: +1 iff c <= 3; gamma = 0: sign(beta)
    assert (T[0].item(), inc[0].item()) == (3, 1)
    assert (T[1].item(), inc[1].item()) == (3, 0)
    assert not ref[:, 2].any() and ref[:, 3].all()


def test_engine_pack_maps_zero_and_negative_zero_to_plus_one():
    lib = library()
    x = torch.tensor([0.0, -0.0, 1e-38, -1e-38, 2.0, -3.0, float("nan"), 0.0]).view(1, 8, 1, 1).contiguous()
    z, bits, A = torch.empty(1, 8, 1, 1), torch.zeros(1, 1, 1, 1, dtype=torch.int64), torch.empty(1, 1)
    lib.eng_pack(ctypes.byref(PackArgs(x=x.data_ptr(), B=1, C=8, H=1, W=1, z=z.data_ptr(), bits=bits.data_ptr(),
                                       A=A.data_ptr(), vec=8)))
    # bit 1 = -1 for -1e-38, -3 and NaN (torch.where(x >= 0, 1, -1) gives -1 there); 0 and -0.0 are +1
    assert bits.item() == (1 << 3) | (1 << 5) | (1 << 6)


def test_every_packer_maps_zero_to_plus_one():
    torch.manual_seed(5)
    x = torch.randn(4, 70)
    x[:, ::3] = 0.0
    x[1, 1] = -0.0
    assert torch.equal(kernel.pack_signs(x), kernel.pack_bits(binarize(x)))          # the C row packer
    lin = XnorLinear(70, 9).eval()
    packed = convert_to_packed(nn.Sequential(nn.Identity(), lin, nn.Identity()))
    with torch.no_grad():
        assert torch.equal(packed(x), lin(x))                                           # packed XnorLinear
    conv = XnorConv2d(6, 5, 3, padding=1).eval()
    xc = torch.randn(2, 6, 7, 7)
    xc[:, :, ::2] = 0.0
    pconv = convert_to_packed(nn.Sequential(nn.Identity(), conv, nn.Identity()))
    with torch.no_grad():
        assert torch.equal(pconv(xc), conv(xc))                                         # the conv path


def test_channel_mean_emulation_equals_torch():
    lib = library()
    g = torch.Generator().manual_seed(6)
    for shape in ((1, 37, 9, 11), (2, 5, 2, 2), (1, 512, 8, 8), (3, 200, 5, 3), (1, 70, 1, 1), (2, 3, 33, 1)):
        z = torch.randn(*shape, generator=g) * 3
        ours = torch.empty(shape[0], shape[2] * shape[3])
        lib.eng_channel_mean_abs(z.data_ptr(), shape[0], shape[1], shape[2] * shape[3], 8, ours.data_ptr())
        assert torch.equal(ours.view(shape[0], 1, shape[2], shape[3]), z.abs().mean(dim=1, keepdim=True)), shape


@pytest.mark.parametrize("make", [
    lambda: build("bnnconv", "bwn", (3, 16, 16), 10),
    lambda: build("resnet20", "fp", (3, 32, 32), 10),
    lambda: nn.Sequential(nn.BatchNorm2d(4), XnorConv2d(4, 4, 3, dilation=2)),
    lambda: nn.Sequential(nn.BatchNorm1d(4), XnorLinear(4, 4), nn.BatchNorm1d(4, track_running_stats=False),
                          XnorLinear(4, 4)),
    lambda: nn.Sequential(_BinLinear(4, 4), nn.BatchNorm1d(4), _Sign(), _BinLinear(4, 4, bias=True), _Sign(),
                          _BinLinear(4, 2)),
    lambda: nn.ModuleList([nn.Linear(3, 3)]),
])
def test_engine_refuses_what_it_cannot_run_with_one_line(make):
    with pytest.raises(NnqError) as e:
        to_engine(make())
    assert "\n" not in str(e.value)


def test_engine_refuses_non_float_input():
    eng = to_engine(_trained_like_(build("smallconv", "xnor", (1, 8, 8), 10)))
    with pytest.raises(NnqError):
        eng(torch.zeros(1, 1, 8, 8, dtype=torch.float64))
