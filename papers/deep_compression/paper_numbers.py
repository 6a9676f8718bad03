"""Figures reported in Han, Mao, Dally, "Deep Compression", ICLR 2016 (arXiv 1510.00149v5).

Table 1: the summary (top-1 error before/after, size before/after, compression rate).
Table 2: LeNet-300-100 per layer; Table 3: LeNet-5 (the Caffe LeNet-5, 431K weights) per layer.
Column meaning of Tables 2-3: "Weights%" kept after pruning (P), weight bits after quantization
(P+Q) and after Huffman coding (P+Q+H), relative-index bits (P+Q, P+Q+H), compression rate of
P+Q and P+Q+H as a percentage of the fp32 layer.

Transcribed from arXiv 1510.00149v5 (Table 1; the Total rows' rates 40x, 39x; 12x -> 32x/33x).
"""

# Table 1: network -> (reference top-1 error %, compressed top-1 error %, size before, size after, rate, ref)
SUMMARY = {
    "LeNet-300-100": {"error_ref": 1.64, "error": 1.58, "size_ref": "1070 KB", "size": "27 KB", "rate": 40,
                      "ref": "Table 1"},
    "LeNet-5": {"error_ref": 0.80, "error": 0.74, "size_ref": "1720 KB", "size": "44 KB", "rate": 39,
                "ref": "Table 1"},
    "AlexNet": {"error_ref": 42.78, "error": 42.78, "size_ref": "240 MB", "size": "6.9 MB", "rate": 35,
                "ref": "Table 1"},
    "VGG-16": {"error_ref": 31.50, "error": 31.17, "size_ref": "552 MB", "size": "11.3 MB", "rate": 49,
               "ref": "Table 1"},
}
SIZE_KB = {"LeNet-300-100": (1070, 27), "LeNet-5": (1720, 44)}  # Table 1, before / after

# Per-stage compression rates (x): pruning -> + quantization -> + Huffman (Tables 2-3, "Total" rows).
STAGE_RATES = {
    "LeNet-300-100": {"pruned": 12, "shared": 32, "huffman": 40, "ref": "Table 2, Total"},
    "LeNet-5": {"pruned": 12, "shared": 33, "huffman": 39, "ref": "Table 3, Total"},
}

# Table 2, LeNet-300-100 per layer: weights, kept %, weight bits P+Q, P+Q+H, index bits P+Q, P+Q+H,
# compress rate P+Q %, P+Q+H %.
LENET300_LAYERS = {
    "ip1": {"weights": "235K", "kept_pct": 8, "wbits_pq": 6, "wbits_pqh": 4.4, "ibits_pq": 5, "ibits_pqh": 3.7,
            "rate_pq_pct": 3.1, "rate_pqh_pct": 2.32},
    "ip2": {"weights": "30K", "kept_pct": 9, "wbits_pq": 6, "wbits_pqh": 4.4, "ibits_pq": 5, "ibits_pqh": 4.3,
            "rate_pq_pct": 3.8, "rate_pqh_pct": 3.04},
    "ip3": {"weights": "1K", "kept_pct": 26, "wbits_pq": 6, "wbits_pqh": 4.3, "ibits_pq": 5, "ibits_pqh": 3.2,
            "rate_pq_pct": 15.7, "rate_pqh_pct": 12.70},
    "total": {"weights": "266K", "kept_pct": 8, "wbits_pq": 6, "wbits_pqh": 5.1, "ibits_pq": 5, "ibits_pqh": 3.7,
              "rate_pq_pct": 3.1, "rate_pqh_pct": 2.49},
}
LENET300_REF = "Table 2"

# Table 3, LeNet-5 (Caffe: conv 20, conv 50, ip 500, ip 10) per layer, same columns.
LENET5_LAYERS = {
    "conv1": {"weights": "0.5K", "kept_pct": 66, "wbits_pq": 8, "wbits_pqh": 7.2, "ibits_pq": 5, "ibits_pqh": 1.5,
              "rate_pq_pct": 78.5, "rate_pqh_pct": 67.45},
    "conv2": {"weights": "25K", "kept_pct": 12, "wbits_pq": 8, "wbits_pqh": 7.2, "ibits_pq": 5, "ibits_pqh": 3.9,
              "rate_pq_pct": 6.0, "rate_pqh_pct": 5.28},
    "ip1": {"weights": "400K", "kept_pct": 8, "wbits_pq": 5, "wbits_pqh": 4.5, "ibits_pq": 5, "ibits_pqh": 4.5,
            "rate_pq_pct": 2.7, "rate_pqh_pct": 2.45},
    "ip2": {"weights": "5K", "kept_pct": 19, "wbits_pq": 5, "wbits_pqh": 5.2, "ibits_pq": 5, "ibits_pqh": 3.7,
            "rate_pq_pct": 6.9, "rate_pqh_pct": 6.13},
    "total": {"weights": "431K", "kept_pct": 8, "wbits_pq": 5.3, "wbits_pqh": 4.1, "ibits_pq": 5, "ibits_pqh": 4.4,
              "rate_pq_pct": 3.05, "rate_pqh_pct": 2.55},
}
LENET5_REF = "Table 3"

# Tables 2-3: relative-index width used for LeNet; Sec. 6.2, Fig. 8: linear centroid init is best.
INDEX_BITS_LENET = (5, "Tables 2-3")
BEST_INIT = ("linear", "Sec. 6.2, Fig. 8")
