"""BNN math: Eq. (1) sign, Eq. (4) STE, Alg. 1 clipping, and the exact 1-bit artifact."""

import pytest
import torch
from torch import nn

from common.errors import NnqError
from common.models import MLP, BnnConvNet
from papers.bnn import (BinaryActivation, BinaryConv2d, BinaryLinear, ClipLatentWeights, binarize, binarize_weights_,
                        load_packed, pack_signs, save_packed, sign_ste, square_hinge_loss, unpack_signs)
from papers.bnn.bnn import binary_layers


def test_sign_maps_zero_to_plus_one_and_values_are_exactly_pm1():
    x = torch.tensor([-2.0, -1e-8, 0.0, 1e-8, 3.0])
    assert binarize(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    assert set(sign_ste(torch.randn(1000)).unique().tolist()) == {-1.0, 1.0}


def test_ste_gradient_is_the_eq4_mask_on_a_hand_built_tensor():
    r = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.7, 1.0, 1.01], requires_grad=True)
    g_q = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    sign_ste(r).backward(g_q)
    # 1_{|r|<=1}: kept at -1.0, -0.3, 0, 0.7, 1.0; cancelled at -1.5 and 1.01
    assert r.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]


def test_weight_ste_equals_the_eq4_ste_inside_the_clipping_range():
    from papers.bnn.bnn import weight_sign_ste

    w = (torch.rand(64, 32) * 2 - 1).requires_grad_()
    g = torch.randn(64, 32)
    weight_sign_ste(w).backward(g)
    grad_fast = w.grad.clone()
    w.grad = None
    sign_ste(w).backward(g)
    assert torch.equal(grad_fast, w.grad)
    assert torch.equal(weight_sign_ste(w), sign_ste(w))


def test_binary_linear_and_conv_compute_with_sign_of_latent_weights():
    torch.manual_seed(0)
    lin = BinaryLinear.from_float(nn.Linear(7, 5))
    x = torch.randn(3, 7)
    ref = x @ binarize(lin.weight).T + lin.bias
    torch.testing.assert_close(lin(x), ref)
    conv = BinaryConv2d.from_float(nn.Conv2d(3, 4, 3, padding=1, bias=False))
    xi = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(conv(xi), nn.functional.conv2d(xi, binarize(conv.weight), padding=1))
    assert lin.weight_bits == 1 and conv.weight_bits == 1


def test_binarize_weights_replaces_every_linear_and_keeps_state_dict_keys():
    float_mlp = MLP(64, (32, 32), 10, act=BinaryActivation, out_bn=True)
    keys = set(float_mlp.state_dict())
    model = binarize_weights_(float_mlp)
    assert len(binary_layers(model)) == 3
    assert set(model.state_dict()) == keys
    assert not any(type(m) is nn.Linear for m in model.modules())


def test_clipping_keeps_latent_weights_in_unit_interval_after_steps():
    torch.manual_seed(0)
    model = binarize_weights_(MLP(16, (8,), 3, act=BinaryActivation, out_bn=True))
    opt = torch.optim.SGD(model.parameters(), lr=100.0)
    clip = ClipLatentWeights()
    x, y = torch.randn(32, 16), torch.randint(0, 3, (32,))
    for _ in range(3):
        opt.zero_grad()
        square_hinge_loss(model(x), y).backward()
        opt.step()
        clip.after_step(type("Ctx", (), {"model": model})())
    for m in binary_layers(model):
        assert m.weight.abs().max() <= 1.0
        assert m.weight.abs().max() == 1.0  # lr=100 pushed some weights to the bound


@pytest.mark.parametrize("arch", ["mlp", "convnet"])
def test_every_parameter_gets_a_gradient(arch):
    torch.manual_seed(0)
    if arch == "mlp":
        model, x = MLP(64, (32, 32), 10, act=BinaryActivation, out_bn=True), torch.randn(8, 1, 8, 8)
    else:
        model, x = BnnConvNet(3, 10, act=BinaryActivation, out_bn=True), torch.randn(4, 3, 32, 32)
    binarize_weights_(model)
    square_hinge_loss(model(x), torch.arange(len(x)) % 10).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_square_hinge_loss_by_hand():
    logits = torch.tensor([[0.5, -2.0, 1.5]])
    # t = [+1, -1, -1]; max(0, 1 - t*s)^2 = [0.25, 0, 6.25] -> mean 6.5/3
    assert square_hinge_loss(logits, torch.tensor([0])).item() == pytest.approx(6.5 / 3)


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 5, 3, 3), (129, 65)])
def test_pack_unpack_is_exact(shape):
    w = torch.randn(shape)
    packed = pack_signs(w)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-w.numel() // 8)
    assert torch.equal(unpack_signs(packed, shape), binarize(w))


def test_packed_artifact_reproduces_predictions_and_is_small(tmp_path):
    torch.manual_seed(0)
    model = binarize_weights_(MLP(64, (256, 256), 10, act=BinaryActivation, out_bn=True))
    model(torch.randn(64, 1, 8, 8))  # give BN non-trivial running statistics
    model.eval()
    path = save_packed(model, tmp_path / "m.safetensors")
    fresh = binarize_weights_(MLP(64, (256, 256), 10, act=BinaryActivation, out_bn=True)).eval()
    load_packed(path, fresh)
    x = torch.randn(50, 1, 8, 8)
    assert torch.equal(model(x), fresh(x))
    n_binary = sum(m.weight.numel() for m in binary_layers(model))
    assert path.stat().st_size < n_binary / 8 + 40_000  # 1 bit/weight + fp32 BN + header
    with pytest.raises(NnqError, match="does not match"):
        load_packed(path, binarize_weights_(MLP(64, (128,), 10, act=BinaryActivation, out_bn=True)))


def test_unpack_rejects_wrong_length():
    with pytest.raises(NnqError):
        unpack_signs(torch.zeros(3, dtype=torch.uint8), (40,))


def test_bnn_resnet20_binarizes_the_blocks_only_and_feeds_them_signs():
    from common.models import resnet20
    from papers.bnn.bnn import BinaryConv2d, bnn_resnet_cifar

    float_model = resnet20()
    model = bnn_resnet_cifar(20)
    model.load_state_dict(float_model.state_dict())  # same keys: pretrained float weights load unchanged
    binary = {n for n, m in model.named_modules() if isinstance(m, BinaryConv2d)}
    assert len(binary) == 18 and not binary & {"conv1", "linear"}
    assert type(model.conv1) is torch.nn.Conv2d and type(model.linear) is torch.nn.Linear
    seen = []
    hooks = [m.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0])) for m in model.modules()
             if isinstance(m, BinaryConv2d)]
    model.eval()(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert len(seen) == 18 and all(set(x.unique().tolist()) <= {-1.0, 1.0} for x in seen)


def test_packer_stores_zero_as_plus_one_msb_first():
    w = torch.tensor([0.0, -1.0, 0.0, 2.0, -0.5, -3.0, -1e-9, -7.0, -0.0])  # Eq. (1): Sign(0) = +1
    packed = pack_signs(w)
    assert packed.tolist() == [0b10110000, 0b10000000]  # bit 1 = +1, first value in the most significant bit
    assert unpack_signs(packed, (9,)).tolist() == [1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0, 1.0]


def test_paper_table1_figures_drawn_on_the_curves_are_the_papers():
    # arXiv 1602.02830 Table 1: BNN test error on MNIST, 0.96% (Theano) and 1.40% (Torch7); the curves' reference lines
    from papers.bnn.paper_numbers import TEST_ERROR

    assert TEST_ERROR[("MNIST", "Theano")] == (0.96, "Table 1")
    assert TEST_ERROR[("MNIST", "Torch7")] == (1.40, "Table 1")
