"""Method tests of Deep Compression: pruning masks, k-means sharing, Eq. (3), Huffman, the file."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from common.errors import NnqError
from papers.deep_compression.format import AUTO_WIDTHS, decode, encode, load_into
from papers.deep_compression.huffman import (canonical_codes, entropy_bits, huffman_code_lengths,
                                             huffman_decode, huffman_encode, positions_from_relative,
                                             relative_indices)
from papers.deep_compression.prune import PruneMasks, layer_threshold, prune_mask
from papers.deep_compression.share import (SharedConv2d, SharedLinear, codebook_lookup,
                                           init_centroids, kmeans_1d, share_weights_)


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 10))


def _pruned_shared_net(seed=0, bits=3):
    net = _tiny_net(seed)
    masks = PruneMasks(net)
    masks.prune_({n: 0.3 for n in masks.params})
    share_weights_(net, {n: bits for n in masks.params}, masks=masks.masks)
    return net, masks


# ---------------------------------------------------------------- pruning

def test_threshold_is_quality_times_std():
    w = torch.tensor([-3.0, -1.0, 0.5, 1.0, 3.0])
    assert layer_threshold(w, 0.7).item() == pytest.approx(0.7 * w.std().item())
    keep = prune_mask(w, 0.5)  # std = 2.236..., threshold 1.118 -> only the +-3 survive
    assert keep.tolist() == [True, False, False, False, True]


def test_prune_reaches_density_and_is_monotone():
    net = _tiny_net()
    masks = PruneMasks(net)
    q = masks.prune_({"4": 0.25})
    assert q["4"] > 0
    assert masks.density()["4"] == pytest.approx(0.25, abs=1e-3)
    before = masks.masks["4"].clone()
    masks.prune_({"4": 0.1})
    assert masks.density()["4"] == pytest.approx(0.1, abs=1e-3)
    assert not (masks.masks["4"] & ~before).any()  # a pruned connection never comes back


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_mask_stays_applied_through_optimizer_steps(opt):
    net = _tiny_net()
    masks = PruneMasks(net).attach()
    # build momentum/Adam state while dense, so the state alone would move pruned weights
    o = (torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3) if opt == "sgd"
         else torch.optim.Adam(net.parameters(), lr=0.01, weight_decay=1e-3))
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    nn.functional.cross_entropy(net(x), y).backward()
    o.step()
    masks.prune_({n: 0.2 for n in masks.params})
    w_alive = {n: p.detach().clone() for n, p in masks.params.items()}
    for _ in range(3):
        o.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        for n, p in masks.params.items():
            assert (p.grad[~masks.masks[n]] == 0).all()  # gradients of pruned weights are zeroed
        o.step()
        masks.after_step(None)
    for n, p in masks.params.items():
        assert (p[~masks.masks[n]] == 0).all()
        assert not torch.equal(p[masks.masks[n]], w_alive[n][masks.masks[n]])  # survivors still learn
    masks.detach()


# ---------------------------------------------------------------- weight sharing

def test_linear_init_and_kmeans_on_hand_built_tensor():
    w = torch.tensor([-1.0, -0.9, -0.1, 0.0, 0.1, 0.9, 1.0])
    assert torch.allclose(init_centroids(w, 3, "linear"), torch.tensor([-1.0, 0.0, 1.0]))
    c, idx = kmeans_1d(w, 3, "linear")
    assert torch.allclose(c, torch.tensor([-0.95, 0.0, 0.95]))
    assert idx.tolist() == [0, 0, 1, 1, 1, 2, 2]


def test_density_and_random_init():
    w = torch.arange(100, dtype=torch.float32)
    d = init_centroids(w, 4, "density")
    assert torch.allclose(d, torch.quantile(w, torch.tensor([0.125, 0.375, 0.625, 0.875])))
    g = torch.Generator().manual_seed(0)
    r = init_centroids(w, 4, "random", g)
    assert set(r.tolist()) <= set(w.tolist()) and len(set(r.tolist())) == 4
    with pytest.raises(NnqError):
        init_centroids(w, 4, "kmeans++")


def test_linear_init_keeps_large_weights_better_than_density():
    # Sec. 3.2 / Sec. 6.2, Fig. 8: with a long-tailed layer, linear init represents the large weights
    w = torch.randn(5000, generator=torch.Generator().manual_seed(0)) ** 3
    c_lin, i_lin = kmeans_1d(w, 8, "linear")
    c_den, i_den = kmeans_1d(w, 8, "density")
    big = w.abs() > w.abs().quantile(0.99)
    err = lambda c, i: ((w - c[i]) ** 2)[big].mean()
    assert err(c_lin, i_lin) < err(c_den, i_den)


def test_centroid_gradient_is_sum_of_member_gradients():
    torch.manual_seed(0)
    codebook = torch.randn(4, requires_grad=True)
    idx = torch.randint(0, 4, (5, 6))
    mask = torch.rand(5, 6) > 0.3
    w = codebook_lookup(codebook, idx, mask)
    assert torch.equal(w, codebook.detach()[idx] * mask)
    upstream = torch.randn(5, 6)
    (w * upstream).sum().backward()
    expected = torch.stack([(upstream * ((idx == k) & mask)).sum() for k in range(4)])  # Eq. (3)
    assert torch.allclose(codebook.grad, expected)


def test_shared_layers_match_float_forward_and_train_only_codebook():
    torch.manual_seed(0)
    lin = nn.Linear(20, 7)
    s = SharedLinear.from_float(lin, 8)
    assert s.codebook.numel() == 8 and s.weight_bits == 3
    assert torch.equal(s.weight, s.codebook.detach()[s.idx])
    x = torch.randn(3, 20)
    assert torch.allclose(s(x), nn.functional.linear(x, s.weight, lin.bias))
    small = nn.Linear(2, 3)
    few = SharedLinear.from_float(small, 16)  # 6 weights, 16 clusters: only the used centroids are kept
    assert few.codebook.numel() <= 6 and (torch.bincount(few.idx.flatten(), minlength=few.codebook.numel()) > 0).all()
    assert few.weight_bits == max(1, (few.codebook.numel() - 1).bit_length())
    conv = nn.Conv2d(2, 3, 3)
    sc = SharedConv2d.from_float(conv, 4, mask=conv.weight.abs() > 0.1)
    assert (sc.weight[~sc.mask] == 0).all()
    sc(torch.randn(1, 2, 5, 5)).sum().backward()
    assert sc.codebook.grad is not None and {n for n, _ in sc.named_parameters()} == {"codebook", "bias"}
    assert set(sc.state_dict()) >= {"weight", "bias"}


# ---------------------------------------------------------------- Huffman

def test_huffman_round_trip_and_prefix_free():
    rng = np.random.default_rng(0)
    sym = rng.choice(6, size=3000, p=[0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    lengths = huffman_code_lengths(np.bincount(sym, minlength=8))
    assert lengths[6] == lengths[7] == 0
    codes = canonical_codes(lengths)
    words = [format(int(codes[s]), f"0{int(lengths[s])}b") for s in range(8) if lengths[s]]
    assert not any(a != b and b.startswith(a) for a in words for b in words)  # prefix-free
    assert sum(2.0 ** -len(wd) for wd in words) == 1.0  # complete code (Kraft equality)
    payload, nbits = huffman_encode(sym, lengths)
    assert nbits == int(lengths[sym].sum())
    assert np.array_equal(huffman_decode(payload, nbits, sym.size, lengths), sym)


def test_huffman_single_symbol_and_length_limit():
    sym = np.zeros(10, dtype=np.int64)
    lengths = huffman_code_lengths(np.bincount(sym, minlength=3))
    payload, nbits = huffman_encode(sym, lengths)
    assert nbits == 10 and np.array_equal(huffman_decode(payload, nbits, 10, lengths), sym)
    fib = np.array([1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181, 6765])
    assert huffman_code_lengths(fib).max() <= 15


def _gaussian_layer_indices(bits=5, n=300 * 100, density=0.08, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=g) * 0.05
    alive = w[w.abs() > w.abs().quantile(1 - density)]
    _, idx = kmeans_1d(alive, 2 ** bits, "linear")
    return idx.numpy()


def test_excess_pct_is_the_coded_size_over_the_entropy_bound():
    from papers.deep_compression.huffman import excess_pct

    counts = np.array([1, 1, 2])  # p = 1/4, 1/4, 1/2: dyadic, so Huffman meets the bound exactly
    sym = np.repeat(np.arange(3), counts)
    _, nbits = huffman_encode(sym, huffman_code_lengths(counts))
    assert excess_pct(nbits, entropy_bits(counts) * sym.size) == 0.0
    assert excess_pct(101, 100) == 1.0 and excess_pct(7, 0.0) == 0.0  # a one-symbol stream carries no information


def test_huffman_within_one_percent_of_entropy_on_real_indices():
    # indices of a k-means (5-bit, linear init) quantized, 92%-pruned Gaussian layer (LeNet-300 fc1-like)
    idx = _gaussian_layer_indices()
    counts = np.bincount(idx, minlength=32)
    h = entropy_bits(counts)
    lengths = huffman_code_lengths(counts)
    _, nbits = huffman_encode(idx, lengths)
    mean = nbits / idx.size
    assert h <= mean <= 1.01 * h, (mean, h)
    assert mean < 5.0  # and below the fixed 5 bits


def _shared_weights(rel):
    root = os.environ.get("NNQ_WEIGHTS_DIR") or (
        str(Path(os.environ["NNQ_DATA_DIR"]) / ".." / "weights") if os.environ.get("NNQ_DATA_DIR") else None)
    path = Path(root) / rel if root else None
    if path is None or not path.is_file():
        pytest.skip(f"shared weights {rel} not found (set NNQ_WEIGHTS_DIR or NNQ_DATA_DIR)")
    return path


def test_huffman_within_one_percent_of_entropy_on_a_trained_layer():
    # a real layer: c5 of the shared MNIST LeNet-5 (48,000 weights), 92% pruned, 5-bit linear-init k-means
    from common.models import load_lenet5_mnist
    model = load_lenet5_mnist(_shared_weights("csinva-gan-vae-pretrained-pytorch/lenet_epoch=12_test_acc=0.991.pth"))
    w = model.convnet.c5.weight.detach().flatten()
    _, idx = kmeans_1d(w[w.abs() > w.abs().quantile(0.92)], 32, "linear")
    counts = np.bincount(idx.numpy(), minlength=32)
    _, nbits = huffman_encode(idx.numpy(), huffman_code_lengths(counts))
    h = entropy_bits(counts)
    assert h <= nbits / idx.numel() <= 1.01 * h, (nbits / idx.numel(), h)


# ---------------------------------------------------------------- relative indices

def test_relative_indices_with_gaps_longer_than_the_width():
    pos = np.array([0, 1, 5, 40, 41, 100])
    rel = relative_indices(pos, width=3)  # longest gap one symbol codes: 7
    # gap 35 (5 -> 40) = 4 fillers x 7 + 7; gap 59 (41 -> 100) = 8 fillers x 7 + 3
    assert rel.tolist() == [1, 1, 4, 0, 0, 0, 0, 7, 1] + [0] * 8 + [3]
    assert np.array_equal(positions_from_relative(rel, 3), pos)
    rng = np.random.default_rng(1)
    pos = np.sort(rng.choice(100000, size=500, replace=False))
    for width in (1, 2, 5, 8):
        assert np.array_equal(positions_from_relative(relative_indices(pos, width), width), pos)


# ---------------------------------------------------------------- the file

@pytest.mark.parametrize("huffman", [True, False])
def test_file_round_trip_is_bit_exact(tmp_path, huffman):
    net, _ = _pruned_shared_net()
    # fine-tuned centroids are arbitrary floats: perturb them so nothing relies on k-means values
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (SharedLinear, SharedConv2d)):
                m.codebook.add_(torch.randn_like(m.codebook) * 1e-3)
    net.eval()
    x = torch.randn(4, 1, 8, 8)
    ref = net(x)
    stats = encode(net, tmp_path / "m.nqdc", width=3, huffman=huffman)
    assert stats.size_bytes == (tmp_path / "m.nqdc").stat().st_size
    dec = decode(tmp_path / "m.nqdc")
    for name, m in net.named_modules():
        if isinstance(m, (SharedLinear, SharedConv2d)):
            d = dec.shared[name]
            assert torch.equal(d.codebook, m.codebook.detach())
            assert torch.equal(d.idx, m.idx) and torch.equal(d.mask, m.mask)
            assert torch.equal(d.weight(), m.weight)
    plain = _tiny_net(seed=1).eval()  # other init: everything must come from the file
    load_into(plain, dec)
    assert torch.equal(plain(x), ref)
    for k, v in net.state_dict().items():
        if k in plain.state_dict():
            assert torch.equal(plain.state_dict()[k], v), k


def test_auto_width_picks_each_layers_smallest_position_stream(tmp_path):
    torch.manual_seed(0)
    # two layers with different gap statistics: dense-ish (short gaps) and very sparse (long gaps, many fillers)
    net = nn.Sequential(nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 300))
    masks = PruneMasks(net)
    masks.prune_({"0": 0.5, "2": 0.01})
    share_weights_(net, {"0": 4, "2": 4}, masks=masks.masks)
    auto = encode(net, tmp_path / "auto.nqdc", width=None)
    per_width = {w: encode(net, tmp_path / f"w{w}.nqdc", width=w) for w in AUTO_WIDTHS}
    for name in ("0", "2"):
        sizes = {w: s.layers[name]["position"]["payload_bits"] // 8 + s.layers[name]["position"]["table_bytes"]
                 for w, s in per_width.items()}
        chosen = auto.layers[name]["width"]
        assert auto.layers[name]["position"] == per_width[chosen].layers[name]["position"]
        assert sizes[chosen] <= min(sizes.values()) + 1  # smallest up to the byte rounding of the payload
    assert auto.layers["0"]["width"] < auto.layers["2"]["width"]  # long gaps -> a wider relative index
    assert auto.size_bytes <= min(s.size_bytes for s in per_width.values())
    dec = decode(tmp_path / "auto.nqdc")
    for name in ("0", "2"):
        assert torch.equal(dec.shared[name].weight(), net.get_submodule(name).weight)


def test_pruned_fp32_file_round_trip(tmp_path):
    net = _tiny_net()
    masks = PruneMasks(net)
    masks.prune_({n: 0.1 for n in masks.params})
    encode(net, tmp_path / "p.nqdc", sparse_layers=list(masks.params), huffman=False)
    plain = load_into(_tiny_net(seed=3), decode(tmp_path / "p.nqdc"))
    for k, v in net.state_dict().items():
        assert torch.equal(plain.state_dict()[k], v), k


def test_unpruned_shared_layer_stores_no_positions(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(50, 20))
    share_weights_(net, {"0": 4})
    stats = encode(net, tmp_path / "d.nqdc")
    assert stats.layers["0"]["position"]["coding"] == "constant"
    assert torch.equal(decode(tmp_path / "d.nqdc").shared["0"].weight(), net[0].weight)


def test_corrupted_or_truncated_file_raises(tmp_path):
    net, _ = _pruned_shared_net()
    path = tmp_path / "m.nqdc"
    encode(net, path)
    data = path.read_bytes()
    bad = tmp_path / "bad.nqdc"
    cases = {
        "truncated": data[:-10],
        "truncated header": data[:7],
        "bit flip": data[:40] + bytes([data[40] ^ 0x10]) + data[41:],
        "bad magic": b"XXXX" + data[4:],
        "extra bytes": data + b"\0",
    }
    for case, blob in cases.items():
        bad.write_bytes(blob)
        with pytest.raises(NnqError):
            decode(bad)
    with pytest.raises(NnqError):
        decode(tmp_path / "missing.nqdc")
    with pytest.raises(NnqError):  # a valid file into the wrong model
        load_into(nn.Sequential(nn.Linear(3, 3)), decode(path))


# ---------------------------------------------------------------- the report

def test_layers_ratio_weighs_layer_rates_by_layer_size():
    from papers.deep_compression.paper_numbers import LENET5_LAYERS
    from papers.deep_compression.results import _count, layers_ratio

    assert layers_ratio([(1000, 2.5)]) == 40.0  # one layer at 2.5% of its fp32 size
    # 100 weights at 10% and 300 at 2.5%: 17.5 of 400 weights' bytes -> 22.86x (not the mean rate's 16x)
    assert layers_ratio([(100, 10.0), (300, 2.5)]) == 22.86
    assert [_count(p["weights"]) for p in LENET5_LAYERS.values()] == [500, 25_000, 400_000, 5_000, 431_000]


@pytest.mark.parametrize("huffman", [True, False])
def test_stored_fields_read_from_the_file_match_the_writer_and_exclude_overhead(tmp_path, huffman):
    from common.evaluate import model_bits
    from papers.deep_compression.format import stored_fields

    net, _ = _pruned_shared_net()
    stats = encode(net.eval(), tmp_path / "m.nqdc", width=None if huffman else 3, huffman=huffman)
    fields = stored_fields(tmp_path / "m.nqdc")
    assert fields == stats.stored_fields()
    # every shared layer declares a fp32 codebook, an index stream and a position stream; raw tensors at their width
    shared = [n for n, m in net.named_modules() if isinstance(m, (SharedLinear, SharedConv2d))]
    assert {f.name for f in fields} >= {f"{n}.{part}" for n in shared for part in ("codebook", "index", "position")}
    assert all(f.bits == 32 * f.count for f in fields if f.name.endswith(".codebook"))
    # the file is the fields plus its own overhead (magic, heads, names, lengths, CRC): strictly more bits
    assert model_bits(fields) < 8 * stats.size_bytes


def test_pruned_fp32_layers_declare_their_survivors_at_32_bits(tmp_path):
    from papers.deep_compression.format import stored_fields

    net = _tiny_net(seed=0)
    layers = [n for n, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    masks = PruneMasks(net, layers)
    masks.prune_({n: 0.3 for n in layers})
    masks.apply_()
    stats = encode(net, tmp_path / "p.nqdc", width=4, huffman=False, sparse_layers=layers)
    fields = {f.name: f for f in stored_fields(tmp_path / "p.nqdc")}
    for n in layers:
        alive = int((dict(net.named_modules())[n].weight != 0).sum())
        assert fields[f"{n}.values"].count == alive and fields[f"{n}.values"].bits == 32 * alive
    assert list(fields.values()) == stats.stored_fields()


def test_canonical_codes_are_the_documented_bits():
    # shorter codes first, ties by symbol index: what a decoder written from the format's description expects
    assert canonical_codes(np.array([2, 1, 3, 3, 0])).tolist() == [0b10, 0b0, 0b110, 0b111, 0]
    assert canonical_codes(np.array([3, 3, 2, 2, 2])).tolist() == [0b110, 0b111, 0b00, 0b01, 0b10]


def test_paper_references_as_in_the_papers_text():
    # arXiv 1510.00149v5: Table 2's Total row gives 5.1 weight bits after Huffman (its layer rows 4.3-4.4), the
    # centroid-initialisation experiment is Sec. 6.2 / Fig. 8, and the deck's formulas carry Eq. (1) = the
    # compression rate and Eq. (2) = the k-means objective
    from papers.deep_compression.paper_numbers import BEST_INIT, LENET300_LAYERS
    from papers.deep_compression.results import FORMULAS

    assert LENET300_LAYERS["total"]["wbits_pqh"] == 5.1
    assert [LENET300_LAYERS[k]["wbits_pqh"] for k in ("ip1", "ip2", "ip3")] == [4.4, 4.4, 4.3]
    assert BEST_INIT == ("linear", "Sec. 6.2, Fig. 8")
    eqs = {f.label: f.latex for f in FORMULAS if f.label.startswith("Eq.")}
    assert r"\log_2 k" in eqs["Eq. (1)"] and r"\arg\min" in eqs["Eq. (2)"]
