"""Figures reported in Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration", MLSys 2024 (arXiv 2306.00978).

Each entry is (value, reference) and is added only after it was checked against the paper's text. Checked so far:
the two figures of the abstract (arXiv 2306.00978, ar5iv rendering of the paper). Not yet checked, so not entered:
the perplexities of Table 4 (LLaMA-7B INT4 g128 WikiText-2 FP16 / RTN / GPTQ / AWQ; INT3), the salient-channel
ablation of Table 1 and the OpenFlamingo COCO CIDEr scores; the package's tables show "—" for them until then.
"""

ABSTRACT: dict[str, tuple[float, str]] = {
    "salient_weight_fraction_pct": (1.0, "Abstract: protecting only 1% of salient weights greatly reduces the error"),
    "tinychat_speedup_vs_hf_fp16": (3.0, "Abstract: more than 3x speedup over the Hugging Face FP16 implementation"),
}
"""Claims of the abstract, as numbers: (value, where)."""

PERPLEXITY: dict[tuple[str, str, str], tuple[float, str]] = {}
"""(model, precision e.g. "INT4-g128", method) -> (WikiText-2 perplexity, table reference); none checked yet."""
