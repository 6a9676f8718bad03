"""AWQ's math: quantizer levels and zero points, the exact float identity of the scaling, the searches never
worse than their no-op point, and the artifact round trip."""

import copy

import pytest
import torch
from torch import nn

from common.errors import NnqError
from papers.awq import awq


def _outlier_input(n_tok=256, c_in=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_tok, c_in, generator=g)
    x[:, :4] *= 30.0  # a few outlier channels, as in real transformer activations
    return x


@pytest.mark.parametrize("bits", [3, 4])
def test_group_quantizer_levels_zero_points_and_idempotence(bits):
    w = torch.randn(8, 256, generator=torch.Generator().manual_seed(1))
    delta, zero = awq.group_params(w, bits, 128)
    q = awq.quantize_codes(w, delta, zero, bits)
    assert delta.shape == zero.shape == (8, 2, 1)
    assert int(q.max()) <= 2**bits - 1 and int(q.min()) >= 0
    assert torch.equal(zero, zero.round()) and (zero >= 0).all() and (zero <= 2**bits - 1).all()
    w_hat = awq.pseudo_quantize(w, bits, 128)
    for row in awq.group_view(w_hat, 128).reshape(-1, 128):  # at most 2^N distinct values per group
        assert row.unique().numel() <= 2**bits
    # min and max of each group land within half a step of a level; zero (when in range) is a level exactly
    g, gh = awq.group_view(w, 128), awq.group_view(w_hat, 128)
    assert ((g - gh).abs() <= delta / 2 + 1e-6).all()
    assert torch.allclose(awq.dequantize(zero.expand(-1, -1, 128).reshape(8, 256).to(torch.uint8), delta, zero),
                          torch.zeros(8, 256))
    assert torch.allclose(awq.pseudo_quantize(w_hat, bits, 128), w_hat, atol=1e-5)  # idempotent


def test_quantizer_rejects_a_group_size_that_does_not_divide():
    with pytest.raises(NnqError, match="group size"):
        awq.pseudo_quantize(torch.randn(4, 100), 4, 128)


def test_scaling_transform_leaves_the_float_output_unchanged():
    x, w = _outlier_input(), torch.randn(64, 256)
    s = awq.normalised_scale(awq.activation_scale(x), 0.7)
    # Eq. (2) before quantization: (W diag(s)) (diag(s)^-1 X) = W X
    assert torch.allclose(awq.scale_input(x, s) @ awq.scale_weight(w, s).T, x @ w.T, rtol=1e-4, atol=1e-3)
    lin = nn.Linear(256, 64)
    q = awq.AwqLinear.from_float(lin, 8, 128, scale=s)  # at 8 bits the layer is close to float
    ref = lin(x)
    assert (q(x) - ref).abs().max() < 0.02 * ref.abs().max()


@pytest.mark.parametrize("bits", [3, 4])
def test_scale_search_never_worse_than_rtn_and_better_with_outliers(bits):
    x = _outlier_input()
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(2))
    res = awq.search_scale(x, [w], bits, 128, n_grid=10)
    assert res["curve"][0][0] == 0.0 and res["error"] <= res["rtn_error"]
    assert res["error"] == min(e for _, e in res["curve"])
    assert res["error"] < 0.9 * res["rtn_error"]  # outlier channels: scaling helps clearly
    assert res["alpha"] > 0


def test_clip_search_never_worse_than_no_clip():
    x, w = _outlier_input(), torch.randn(32, 256)
    w[0, 5] = 12.0  # one weight outlier: clipping its group should pay
    max_val = awq.search_clip(x, w, 4, 128, n_grid=10)
    absmax = awq.group_view(w, 128).abs().amax(-1)
    assert (max_val <= absmax + 1e-6).all() and (max_val >= 0.5 * absmax - 1e-6).all()
    err = lambda wq: (x @ wq.T - x @ w.T).pow(2).mean().item()
    clipped = awq.pseudo_quantize(torch.maximum(torch.minimum(w, max_val.repeat_interleave(128, 1)),
                                                -max_val.repeat_interleave(128, 1)), 4, 128, max_val)
    assert err(clipped) <= err(awq.pseudo_quantize(w, 4, 128)) + 1e-9


def test_activation_salient_channels_are_the_outlier_channels():
    x, w = _outlier_input(), torch.randn(64, 256)
    keep = awq.salient_channels("activation", w, awq.activation_scale(x), fraction=4 / 256)
    assert sorted(keep.tolist()) == [0, 1, 2, 3]
    kept = awq.keep_channels_fp(w, 3, 128, keep)
    assert torch.equal(kept[:, keep], w[:, keep])
    assert awq.output_error(x, [w], 3, 128) > ((x @ kept.T - x @ w.T).pow(2).mean().item())


def test_input_groups_share_one_scale_for_q_k_v():
    names = ["l.0.attention.self.query", "l.0.attention.self.key", "l.0.attention.self.value",
             "l.0.attention.output.dense", "l.0.intermediate.dense"]
    assert awq.input_groups(names) == [names[:3], [names[3]], [names[4]]]
    llama = ["m.0.self_attn.q_proj", "m.0.self_attn.k_proj", "m.0.self_attn.v_proj", "m.0.self_attn.o_proj",
             "m.0.mlp.gate_proj", "m.0.mlp.up_proj", "m.0.mlp.down_proj"]
    assert awq.input_groups(llama) == [llama[:3], [llama[3]], llama[4:6], [llama[6]]]


def test_artifact_save_load_apply_is_identical(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
    x = _outlier_input(64, 128)
    names = awq.linear_names(model)
    inputs = awq.capture_inputs(model, names, lambda: model(x))
    art = awq.search_model(model, inputs, 4, 64, n_grid=5)
    awq.save_artifact(art, tmp_path / "awq.safetensors")
    loaded = awq.load_artifact(tmp_path / "awq.safetensors")
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    awq.apply_awq_(a, art, 4, 64)
    awq.apply_awq_(b, loaded, 4, 64)
    assert torch.equal(a(x), b(x))
    assert isinstance(a[0], awq.AwqLinear) and isinstance(a[0], nn.Linear)
    assert set(a.state_dict()) >= {"0.weight", "0.bias", "2.weight"}


def test_load_artifact_rejects_a_foreign_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(NnqError, match="not an AWQ search artifact"):
        awq.load_artifact(tmp_path / "other.safetensors")


@pytest.mark.parametrize("bits", [3, 4])
def test_bit_packing_round_trips(bits):
    from papers.awq.artifact import pack_bits, unpack_bits

    codes = torch.randint(0, 2**bits, (7, 33), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    stream = pack_bits(codes, bits)
    assert stream.numel() == -(-codes.numel() * bits // 8)
    assert torch.equal(unpack_bits(stream, bits, (7, 33)), codes)


@pytest.mark.parametrize("bits", [3, 4])
def test_packed_artifact_reloads_the_same_model(tmp_path, bits):
    from common.evaluate import model_bits
    from papers.awq.artifact import load_packed, save_packed, stored_fields

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 256), nn.LayerNorm(256), nn.Linear(256, 64))
    x = _outlier_input(64, 128)
    inputs = awq.capture_inputs(model, awq.linear_names(model), lambda: model(x))
    art = awq.search_model(model, inputs, bits, 64, n_grid=5)
    q = copy.deepcopy(model)
    awq.apply_awq_(q, art, bits, 64)
    path = save_packed(q, tmp_path / "packed.safetensors")
    back = load_packed(path, copy.deepcopy(model))
    assert torch.equal(back(x), q(x))
    assert model_bits(stored_fields(q)) < 8 * path.stat().st_size


def test_int4_kernel_equals_the_pseudo_quantized_layer_within_bf16():
    from papers.awq import int4

    if not int4.available():
        pytest.skip("this torch has no aten._weight_int4pack_mm_for_cpu")
    torch.manual_seed(0)
    lin = nn.Linear(256, 128)
    x = _outlier_input(16, 256)
    s = awq.normalised_scale(awq.activation_scale(x), 0.5)
    q = awq.AwqLinear.from_float(lin, 4, 128, scale=s)
    i4 = int4.Int4Linear.from_awq(q)
    ref = q(x)
    assert (i4(x) - ref).abs().max() <= 1e-2 * ref.abs().max()  # bf16 activations and scales
    assert i4(x[:1]).shape == (1, 128) and i4(x.reshape(2, 8, 256)).shape == (2, 8, 128)
    with pytest.raises(ValueError, match="4-bit"):
        int4.Int4Linear.from_awq(awq.AwqLinear.from_float(lin, 3, 128))


def _has_avx2() -> bool:
    from common.runs import cpu_flags

    return {"avx2", "fma"} <= set(cpu_flags())


def test_our_packing_round_trips_and_puts_channel_64b_8j_i_in_nibble_j_of_word_i():
    from papers.awq import int4

    codes = torch.randint(0, 16, (7, 192), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    words = int4.pack_codes(codes)
    assert words.shape == (7, 24) and words.dtype == torch.int32  # two codes per byte
    assert torch.equal(int4.unpack_codes(words), codes)
    b, j, i = 2, 7, 5  # the top nibble of a word: the sign bit of the int32
    assert (int(words[3, 8 * b + i]) & 0xFFFFFFFF) >> (4 * j) & 0xF == int(codes[3, 64 * b + 8 * j + i])
    with pytest.raises(NnqError, match="multiple of 64"):
        int4.pack_codes(codes[:, :100])


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
@pytest.mark.parametrize("n,k,group,m", [(1, 64, 64, 1), (7, 192, 64, 3), (33, 640, 128, 5), (130, 256, 128, 9),
                                         (5, 512, 256, 2), (4, 384, 128, 1)])
def test_our_kernel_equals_the_dequantized_layer_within_fp32(isa, n, k, group, m):
    from papers.awq import int4

    if isa == "avx2" and not _has_avx2():
        pytest.skip("this CPU has no AVX2/FMA")
    g = torch.Generator().manual_seed(n * k + m)
    lin = nn.Linear(k, n)
    s = torch.rand(k, generator=g) + 0.5
    q = awq.AwqLinear.from_float(lin, 4, group, scale=s)  # w = Delta (q - z), input divided by s
    ours = int4.OursInt4Linear.from_awq(q, isa)
    x = torch.randn(m, k, generator=g) * 3
    with torch.no_grad():
        ref = torch.nn.functional.linear(x * q.inv_scale, q.weight, q.bias)  # the dequantized fp32 layer
        bound = (x * q.inv_scale).abs() @ q.weight.abs().T + q.bias.abs()  # sum of |terms|
        y = ours(x)
    assert y.shape == (m, n)
    assert ((y - ref).abs() <= 64 * torch.finfo(torch.float32).eps * bound).all()  # fp32 rounding, not 4-bit error
    int4.set_num_threads(2)  # OpenMP splits the rows: the same arithmetic per output
    try:
        assert torch.equal(ours(x.reshape(m, 1, k)).reshape(m, n), y)
    finally:
        int4.set_num_threads(1)


def test_our_kernel_model_swap_and_its_one_line_errors(monkeypatch, tmp_path):
    from papers.awq import int4

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 128, bias=False))
    q = copy.deepcopy(model)
    awq.apply_rtn_(q, ["0", "2"], 4, 64)
    ours = copy.deepcopy(q)
    assert int4.to_int4_(ours, "ours", "scalar") == ["0", "2"]
    x = torch.randn(3, 128)
    with torch.no_grad():
        assert torch.allclose(ours(x), q(x), rtol=1e-5, atol=1e-5)
        with pytest.raises(NnqError, match="fp32 CPU input"):
            ours(x.double())
    with pytest.raises(NnqError, match="kernel="):
        int4.to_int4_(copy.deepcopy(q), "cuda")
    with pytest.raises(ValueError, match="multiple of 64"):
        int4.OursInt4Linear.from_awq(awq.AwqLinear.from_float(nn.Linear(96, 4), 4, 32))
    monkeypatch.setattr(int4, "_LIBS", {})
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("NNQ_CACHE_DIR", str(tmp_path))
    with pytest.raises(NnqError, match="C compiler"):
        int4.library("scalar")


def test_split_attention_computes_what_multihead_attention_computes():
    from common.models import SplitMultiheadAttention, split_attention_

    torch.manual_seed(0)
    for batch_first in (True, False):
        mha = nn.MultiheadAttention(64, 4, batch_first=batch_first).eval()
        x = torch.randn(2, 7, 64) if batch_first else torch.randn(7, 2, 64)
        mask = torch.triu(torch.full((7, 7), float("-inf")), 1)  # causal, as CLIP's text tower
        ref = mha(x, x, x, need_weights=False, attn_mask=mask)[0]
        holder = nn.Sequential(mha)
        assert split_attention_(holder) == ["0"] and isinstance(holder[0], SplitMultiheadAttention)
        assert torch.allclose(holder[0](x, x, x, need_weights=False, attn_mask=mask)[0], ref, atol=1e-5)
        assert [n for n, _ in holder.named_modules() if n.endswith("_proj")] == ["0.q_proj", "0.k_proj", "0.v_proj",
                                                                                 "0.out_proj"]


def test_int4_speed_is_a_known_gap_only_while_the_benchmark_finds_it_short():
    from papers.awq import results

    def bench(layer, minilm):
        rows = [{"what": "4096x4096 layer", "threads": 1, "fp32_over_ours_avx2": layer},
                {"what": "MiniLM-L6 forward", "threads": 1, "fp32_over_ours_avx2": minilm}]
        return {"rows": rows, "isa_env": {"ATEN_CPU_CAPABILITY": "avx2"},
                "targets": {"layer_met": layer >= 3, "minilm_met": minilm > 1}}

    for layer, minilm, fast in ((3.4, 1.2, True), (2.2, 1.2, False), (3.4, 0.9, False)):
        b = bench(layer, minilm)
        line = results._int4_speed_line(b).replace("`", "")
        assert f"runs {layer:.2f}× faster than fp32" in line and f"runs at {minilm:.2f}× fp32" in line
        assert ("costs compute that fp32 does not pay" in line) is (layer < 3)
        assert (line in results._known_gaps(b)) is not fast
        assert (results._int4_speed_line(b, slide=True) in results._takeaways([], None, b)) is fast
        assert "Measured on an AVX2-only CPU" in line  # the hand-made result records no AVX-512 flag
    avx512 = {**bench(3.4, 1.2), "cpu_flags": ["avx2", "avx512f"]}
    assert "Forced on this AVX-512 machine" in results._int4_speed_line(avx512)
