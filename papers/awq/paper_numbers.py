"""Figures reported in Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration", MLSys 2024 (arXiv 2306.00978).

Each entry is (value, reference) and is added only after it was checked against the paper's text (the MLSys
version's numbering; two independent text renderings of arXiv 2306.00978 agree on every figure below): the two
figures of the abstract, the 7B columns of Table 4 and the salient-channel ablation of Table 1. Not entered: the
OpenFlamingo COCO CIDEr scores (Table 6) and the larger models' columns, which no slide uses.
"""

ABSTRACT: dict[str, tuple[float, str]] = {
    "salient_weight_fraction_pct": (1.0, "Abstract: protecting only 1% of salient weights greatly reduces the error"),
    "tinychat_speedup_vs_hf_fp16": (3.0, "Abstract: more than 3x speedup over the Hugging Face FP16 implementation"),
}
"""Claims of the abstract, as numbers: (value, where)."""

_T4 = "Table 4 (WikiText-2 perplexity)"
PERPLEXITY: dict[tuple[str, str, str], tuple[float, str]] = {
    ("LLaMA-7B", "FP16", "-"): (5.68, _T4),
    ("LLaMA-7B", "INT3-g128", "RTN"): (7.01, _T4),
    ("LLaMA-7B", "INT3-g128", "GPTQ"): (8.81, _T4),
    ("LLaMA-7B", "INT3-g128", "GPTQ-R"): (6.53, _T4),
    ("LLaMA-7B", "INT3-g128", "AWQ"): (6.35, _T4),
    ("LLaMA-7B", "INT4-g128", "RTN"): (5.96, _T4),
    ("LLaMA-7B", "INT4-g128", "GPTQ"): (6.22, _T4),
    ("LLaMA-7B", "INT4-g128", "GPTQ-R"): (5.83, _T4),
    ("LLaMA-7B", "INT4-g128", "AWQ"): (5.78, _T4),
    ("Llama-2-7B", "FP16", "-"): (5.47, _T4),
    ("Llama-2-7B", "INT3-g128", "RTN"): (6.66, _T4),
    ("Llama-2-7B", "INT3-g128", "AWQ"): (6.24, _T4),
    ("Llama-2-7B", "INT4-g128", "RTN"): (5.73, _T4),
    ("Llama-2-7B", "INT4-g128", "AWQ"): (5.60, _T4),
}
"""(model, precision, method) -> (WikiText-2 perplexity, table reference)."""

_T1 = "Table 1 (INT3-g128, WikiText perplexity)"
SALIENT_FP16: dict[tuple[str, str, float], tuple[float, str]] = {
    ("OPT-6.7B", "fp16", 0.0): (10.86, _T1),
    ("OPT-6.7B", "rtn", 0.0): (23.54, _T1),
    ("OPT-6.7B", "activation", 0.1): (11.58, _T1),
    ("OPT-6.7B", "activation", 1.0): (11.39, _T1),
    ("OPT-6.7B", "activation", 3.0): (11.36, _T1),
    ("OPT-6.7B", "weight", 0.1): (23.41, _T1),
    ("OPT-6.7B", "weight", 1.0): (22.37, _T1),
    ("OPT-6.7B", "weight", 3.0): (22.45, _T1),
    ("OPT-6.7B", "random", 0.1): (23.54, _T1),
    ("OPT-6.7B", "random", 1.0): (24.23, _T1),
    ("OPT-6.7B", "random", 3.0): (24.22, _T1),
}
"""(model, channels kept in fp16 chosen by, % kept) -> (perplexity, table reference); "fp16"/"rtn" at 0 %."""
