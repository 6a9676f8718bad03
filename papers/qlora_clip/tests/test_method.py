"""QLoRA math and surgery: NF4 / double quantization against bitsandbytes, LoRA through peft on open_clip layers."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from common.errors import NnqError
from papers.qlora_clip import lora, nf4

bnb = pytest.importorskip("bitsandbytes")
BF = pytest.importorskip("bitsandbytes.functional")

SHAPES = [(64,), (128, 64), (33, 7), (300, 257), (512, 384)]


def _bnb_cpu_ok() -> bool:
    try:
        q, st = BF.quantize_4bit(torch.randn(128), quant_type="nf4", compress_statistics=True, blocksize=64)
        BF.dequantize_4bit(q, st)
        return True
    except Exception:  # noqa: BLE001 - any failure means no CPU path in this bitsandbytes build
        return False


needs_bnb_cpu = pytest.mark.skipif(not _bnb_cpu_ok(), reason="bitsandbytes' 4-bit CPU path cannot run here")


# ------------------------------------------------------------------------------------------ code books


def test_nf4_code_book_matches_bitsandbytes():
    ours, theirs = nf4.normal_float_code_book(4), BF.get_4bit_type("nf4", device="cpu")
    # Known difference: bitsandbytes hard-codes its NF4 table as decimal literals; our table computed from
    # Eq. (4) in float64 differs from it by at most 2 float32 ulps (<= 1.8e-7), never in the exact 0 and +-1.
    assert torch.allclose(ours, theirs, rtol=0, atol=2e-7)
    assert ours[7] == 0 and ours[0] == -1 and ours[-1] == 1
    assert torch.all(ours[1:] > ours[:-1]) and len(ours) == 16
    # asymmetric: 7 negative levels, 8 positive ones (Sec. 3)
    assert (ours < 0).sum() == 7 and (ours > 0).sum() == 8


def test_fp4_and_dynamic_code_books_equal_bitsandbytes():
    assert torch.equal(nf4.fp4_code_book(), BF.get_4bit_type("fp4", device="cpu"))
    assert torch.equal(nf4.dynamic_code_book(), BF.create_dynamic_map(signed=True))


def test_int4_code_book_is_uniform():
    c = nf4.int4_code_book()
    assert torch.allclose(c[1:] - c[:-1], torch.full((15,), 1 / 7))
    assert c.max() == 1 and 0 in c


def test_unknown_quant_type_is_an_error():
    with pytest.raises(NnqError, match="unknown quant type"):
        nf4.quantize_4bit(torch.randn(64), "nf3")
    with pytest.raises(NnqError, match="unknown quant type"):
        lora.quantize_linears_(nn.Sequential(nn.Linear(4, 4)), "int3")


# ---------------------------------------------------------------------------- quantization vs bitsandbytes


def _near_threshold(x: torch.Tensor, code: torch.Tensor, blocksize: int, tol: float) -> torch.Tensor:
    """Elements whose absmax-scaled value lies within ``tol`` of a decision threshold of ``code``."""
    flat = x.reshape(-1).float()
    n = flat.numel()
    nb = math.ceil(n / blocksize)
    blocks = torch.nn.functional.pad(flat, (0, nb * blocksize - n)).view(nb, blocksize)
    scaled = (blocks / blocks.abs().amax(1, keepdim=True).clamp(min=1e-38)).reshape(-1)[:n]
    s = code.sort().values
    mids = (s[1:] + s[:-1]) / 2
    return (scaled[:, None] - mids[None]).abs().min(1).values < tol


@needs_bnb_cpu
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("shape", SHAPES)
def test_codes_and_values_equal_bitsandbytes(shape, quant_type):
    g = torch.Generator().manual_seed(hash(shape) % 1000)
    x = torch.randn(shape, generator=g) * 0.02
    q, st = BF.quantize_4bit(x, quant_type=quant_type, compress_statistics=False, blocksize=64)
    ref = BF.dequantize_4bit(q, st).reshape(shape)
    table = BF.get_4bit_type(quant_type, device="cpu")
    # 1) with bitsandbytes' own table the whole pipeline is bit-exact: packing, absmax, dequantized values
    ours = nf4.quantize_4bit(x, quant_type, double_quant=False, code=table)
    assert torch.equal(ours.packed, q.reshape(-1))
    assert torch.equal(ours.absmax, st.absmax)
    assert torch.equal(ours.dequantize(), ref)
    # 2) with our Eq. (4) table, codes differ only where a value sits within 1e-6 of a decision threshold
    mine = nf4.quantize_4bit(x, quant_type, double_quant=False)
    n = x.numel()
    diff = nf4.unpack_4bit(mine.packed, n) != nf4.unpack_4bit(q.reshape(-1), n)
    assert not (diff & ~_near_threshold(x, table, 64, 1e-6)).any()
    same = ~diff.view(shape)
    assert torch.allclose(mine.dequantize()[same], ref[same], rtol=0, atol=3.5e-7 * x.abs().max().item())  # table diff + 2 roundings


@needs_bnb_cpu
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("shape", [(128, 64), (300, 257), (512, 384)])
def test_double_quant_matches_bitsandbytes(shape, quant_type):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 0.02
    q, st = BF.quantize_4bit(x, quant_type=quant_type, compress_statistics=True, blocksize=64)
    ref = BF.dequantize_4bit(q, st).reshape(shape)
    ours = nf4.quantize_4bit(x, quant_type, double_quant=True, code=BF.get_4bit_type(quant_type, device="cpu"))
    assert torch.equal(ours.packed, q.reshape(-1))
    assert torch.equal(ours.offset, st.offset)
    assert torch.equal(ours.absmax2, st.state2.absmax)
    # Known difference: bitsandbytes' CPU C kernel for the 8-bit second level picks the farther of two levels
    # when the scaled value lies within ~1.4e-5 of their midpoint (0.15% of random values; we round to the
    # nearest). Agreement everywhere else:
    _, absmax = nf4.quantize_blockwise(x, BF.get_4bit_type(quant_type, device="cpu"))
    near = _near_threshold(absmax - absmax.mean(), nf4.dynamic_code_book(), 256, 2e-5)
    agree = ours.absmax == st.absmax
    assert (agree | near).all()
    assert agree.float().mean() > 0.98
    # where the 8-bit constants agree, the dequantized weights are identical
    block_ok = agree.repeat_interleave(64)[: x.numel()].view(shape)
    assert torch.equal(ours.dequantize()[block_ok], ref[block_ok])


def test_double_quant_round_trip_error_bound():
    absmax = torch.rand(1000, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.01
    a8, a2, off = nf4.double_quantize(absmax)
    back = nf4.double_dequantize(a8, a2, off)
    # the dynamic type's largest gap in [0.1, 1] is 0.9/64 of the block's max |c2 - mean| (coarsest exponent)
    bound = (0.9 / 64 / 2) * a2.repeat_interleave(256)[:1000]
    assert ((back - absmax).abs() <= bound + 1e-7).all()
    assert a8.dtype == torch.uint8 and a2.numel() == math.ceil(1000 / 256)


def test_pack_unpack_exact_and_quantize_idempotent():
    codes = torch.randint(0, 16, (1001,), dtype=torch.uint8)
    assert torch.equal(nf4.unpack_4bit(nf4.pack_4bit(codes), 1001), codes)
    w = torch.randn(64, 64)
    once = nf4.fake_quantize_4bit(w, "nf4", double_quant=False)
    assert torch.equal(nf4.fake_quantize_4bit(once, "nf4", double_quant=False), once)  # q(q(x)) = q(x)
    assert len(torch.unique(once[0, :64] / once[0, :64].abs().max())) <= 16  # at most 2^4 levels per block


def test_bits_per_param_from_storage():
    assert nf4.bits_per_param_formula() == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))  # 4.127 (Sec. 3)
    assert nf4.bits_per_param_formula(double_quant=False) == 4.5
    q = nf4.quantize_4bit(torch.randn(1024, 1024), "nf4")
    assert q.packed.dtype == torch.uint8 and q.packed.numel() == 1024 * 1024 // 2
    assert q.bits_per_param() <= nf4.bits_per_param_formula() + 1e-4  # measured from storage
    assert nf4.quantize_4bit(torch.randn(1024, 1024), "nf4", double_quant=False).bits_per_param() == pytest.approx(4.5)


def test_nf4_beats_fp4_and_int4_on_normal_weights():
    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    e = {t: nf4.quantization_error(w, t)["mse"] for t in ("nf4", "fp4", "int4")}
    assert e["nf4"] < e["fp4"] and e["nf4"] < e["int4"]


def test_weight_error_orders_int4_before_fp4_and_int4_first_on_uniform_weights():
    # The README's data-type finding: in weight error, bitsandbytes' E2M1 FP4 loses to uniform Int4 on normal
    # weights (the paper's FP4 < Int4 is a perplexity order), and on uniform weights Int4 beats NF4 too.
    g = torch.Generator().manual_seed(0)
    normal, uniform = torch.randn(256, 256, generator=g), torch.rand(256, 256, generator=g) * 2 - 1
    en = {t: nf4.quantization_error(normal, t)["mse"] for t in ("nf4", "fp4", "int4")}
    eu = {t: nf4.quantization_error(uniform, t)["mse"] for t in ("nf4", "fp4", "int4")}
    assert en["int4"] < en["fp4"]
    assert eu["int4"] < eu["nf4"] < eu["fp4"]


def test_weight_shape_stats_tell_uniform_from_normal_weights():
    from papers.qlora_clip.train import weight_shape_stats

    g = torch.Generator().manual_seed(0)
    m = nn.ModuleDict({"u": nn.Linear(256, 512), "n": nn.Linear(256, 512)})
    with torch.no_grad():
        m["u"].weight.copy_(torch.rand(512, 256, generator=g) * 2 - 1)
        m["n"].weight.copy_(torch.randn(512, 256, generator=g))
    st = weight_shape_stats(m, {"uniform": ["u"], "normal": ["n"], "empty": []})
    assert set(st) == {"uniform", "normal"}
    assert st["uniform"]["excess_kurtosis"] == pytest.approx(-1.2, abs=0.05)  # uniform: -6/5
    assert st["normal"]["excess_kurtosis"] == pytest.approx(0.0, abs=0.1)
    assert st["uniform"]["mean_abs_over_absmax"] > 0.45 > 0.4 > st["normal"]["mean_abs_over_absmax"] > 0.28


# -------------------------------------------------------------------------------- open_clip + peft surgery


class TinyClipImageTower(nn.Module):
    """A real open_clip VisionTransformer, tiny, named ``visual`` as inside an open_clip CLIP."""

    def __init__(self):
        super().__init__()
        from open_clip.transformer import VisionTransformer

        torch.manual_seed(0)
        self.visual = VisionTransformer(image_size=8, patch_size=4, width=64, layers=2, heads=2, mlp_ratio=2,
                                        output_dim=16)

    def forward(self, x):
        return self.visual(x)


@pytest.fixture()
def tower():
    m = TinyClipImageTower().eval()
    lora.split_attention_(m)
    return m


def test_split_attention_is_exact():
    m = TinyClipImageTower().eval()
    x = torch.randn(3, 3, 8, 8)
    ref = m(x)
    names = lora.split_attention_(m)
    assert len(names) == 2 and not any(isinstance(mm, nn.MultiheadAttention) for mm in m.modules())
    assert torch.allclose(m(x), ref, atol=1e-6)


def test_split_attention_with_causal_mask():
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    split = lora.SplitMultiheadAttention.from_mha(mha)
    x = torch.randn(2, 5, 16)
    mask = torch.triu(torch.full((5, 5), float("-inf")), diagonal=1)
    assert torch.allclose(split(x, x, x, attn_mask=mask)[0], mha(x, x, x, need_weights=False, attn_mask=mask)[0],
                          atol=1e-6)


@pytest.mark.parametrize("base", ["fp32", "nf4", "fp4", "int4"])
def test_lora_is_noop_at_init(tower, base):
    x = torch.randn(2, 3, 8, 8)
    lora.quantize_linears_(tower, base)
    before = tower(x)
    names = lora.add_lora_(tower, r=4)
    assert len(names) == 12  # (q, k, v, out_proj, c_fc, c_proj) x 2 blocks
    assert torch.equal(tower(x), before)


def test_lora_merge_unmerge_equivalence(tower):
    x = torch.randn(2, 3, 8, 8)
    base = tower(x)
    lora.add_lora_(tower, r=4)
    for m in lora.lora_layers(tower):
        nn.init.normal_(m.lora_B["default"].weight, std=0.05)
    adapted = tower(x)
    assert not torch.allclose(adapted, base, atol=1e-4)
    lora.merge_lora_(tower)
    assert torch.allclose(tower(x), adapted, atol=1e-5)
    lora.unmerge_lora_(tower)
    assert torch.allclose(tower(x), adapted, atol=1e-5)
    for m in lora.lora_layers(tower):
        m.enable_adapters(False)
    assert torch.allclose(tower(x), base, atol=1e-5)


@needs_bnb_cpu
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_qlora_only_adapters_get_gradients(tower, quant_type):
    q = lora.quantize_linears_(tower, quant_type, double_quant=True)
    assert all(isinstance(tower.get_submodule(n), bnb.nn.Linear4bit) for n in q)
    lora.add_lora_(tower, r=4)
    assert type(tower.visual.transformer.resblocks[0].mlp.c_fc).__module__ == "peft.tuners.lora.bnb"
    tower(torch.randn(2, 3, 8, 8)).square().sum().backward()
    with_grad = {n for n, p in tower.named_parameters() if p.grad is not None}
    assert with_grad and all(".lora_" in n for n in with_grad)
    assert all(".lora_" in n for n, p in tower.named_parameters() if p.requires_grad)
    # the frozen base is really 4-bit: packed uint8 weights
    w = tower.visual.transformer.resblocks[0].mlp.c_fc.base_layer.weight
    assert w.dtype == torch.uint8 and w.quant_state.nested


@needs_bnb_cpu
def test_base_weight_storage_is_4_127_bits(tower):
    q = lora.quantize_linears_(tower, "nf4")
    st = lora.base_weight_storage(tower, q)
    per_tensor = 8 * (st["bytes"] - st["codebook_bytes"]) / st["params"]
    assert per_tensor <= nf4.bits_per_param_formula() + 0.01  # small layers: rounding up of the last blocks
    fp = lora.base_weight_storage(TinyClipImageTower())
    assert fp["bits_per_param"] == 32


def test_target_matching_nothing_lists_available_layers(tower):
    with pytest.raises(NnqError, match=r"matches no linear layer; available: .*c_fc"):
        lora.add_lora_(tower, targets=["not_a_layer"])
    with pytest.raises(NnqError, match="available"):
        lora.add_lora_(copy.deepcopy(tower), targets=r"text\..*")


@pytest.mark.parametrize("r,alpha", [(4, 16.0), (2, 3.0)])
def test_lora_output_difference_is_scaled_b_a_x(r, alpha):
    # Eq. (3): Y = X W + s X L1 L2 with s = alpha / r; the hand-computed update is the oracle
    torch.manual_seed(1)
    model = nn.Sequential()
    model.add_module("visual", nn.Module())
    layer = nn.Linear(12, 7)
    model.visual.proj = layer
    x = torch.randn(5, 12)
    base = layer(x).detach()
    lora.add_lora_(model, targets=["visual.proj"], r=r, alpha=alpha)
    wrapped = model.visual.proj
    a, b = wrapped.lora_A["default"].weight, wrapped.lora_B["default"].weight  # A: [r, in], B: [out, r]
    with torch.no_grad():
        b.normal_(std=0.3)
    expected = base + (alpha / r) * x @ a.t() @ b.t()
    assert torch.allclose(wrapped(x), expected, atol=1e-5)
    assert not torch.allclose(wrapped(x), base + x @ a.t() @ b.t(), atol=1e-3)  # the scale is not 1


@needs_bnb_cpu
@pytest.mark.parametrize("quant_type", ["nf4", "int4"])
def test_stored_fields_count_the_measured_4bit_storage(tower, quant_type):
    # two independent countings agree: declared fields (model_bits) and the bytes of the stored tensors
    from common.evaluate import model_bits

    fp_bits = model_bits(lora.stored_fields(tower))
    assert fp_bits == 32 * (sum(p.numel() for p in tower.parameters())
                            + sum(b.numel() for b in tower.buffers() if b.is_floating_point()))
    q = lora.quantize_linears_(tower, quant_type, backend="ours" if quant_type == "int4" else "bnb")
    st = lora.base_weight_storage(tower, q)
    q_bits = model_bits(lora.stored_fields(tower))
    assert fp_bits - q_bits == 32 * st["params"] - 8 * st["bytes"]
    lora.add_lora_(tower, r=4)
    adapters = sum(p.numel() for n, p in tower.named_parameters() if ".lora_" in n)
    assert model_bits(lora.stored_fields(tower)) == q_bits + 32 * adapters


def test_variant_peak_memory_is_each_variants_own():
    from papers.qlora_clip.train import _VariantPeakMemory

    mem = _VariantPeakMemory()
    mem.reset()
    if mem.kind is None:
        pytest.skip("no resettable peak-memory counter on this machine")
    big = torch.ones(64 * 2**20 // 4 * 4)  # 256 MiB, touched
    del big
    first = mem.peak_mb()
    mem.reset()
    second = mem.peak_mb()  # a later variant that allocates nothing
    assert first - second > 200
