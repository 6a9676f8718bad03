"""Figures reported in Dettmers, Pagnoni, Holtzman, Zettlemoyer, "QLoRA: Efficient Finetuning of Quantized LLMs",
NeurIPS 2023 (arXiv 2305.14314). The paper studies LLaMA language models; it has no CLIP result.
"""

# Table 2: Pile Common Crawl mean perplexity of 125M-13B OPT, BLOOM, LLaMA and Pythia models quantized to
# each 4-bit data type (lower is better).
DATATYPE_PERPLEXITY = {
    # data type: (perplexity, reference)
    "Int4": (34.34, "Table 2"),
    "Float4 (E2M1)": (31.07, "Table 2"),
    "Float4 (E3M0)": (29.48, "Table 2"),
    "NFloat4 + DQ": (27.41, "Table 2"),
}

# Table 4 (Sec. 4): mean 5-shot MMLU test accuracy of LLaMA 7B-65B fine-tuned with adapters on Alpaca and
# FLAN v2, per data type of the base: NF4 with double quantization matches 16-bit.
MMLU = {
    "BFloat16": (53.0, "Table 4 (mean)"),
    "Float4": (52.2, "Table 4 (mean)"),
    "NFloat4 + DQ": (53.1, "Table 4 (mean)"),
}

# Sec. 3 "Double Quantization": the memory cost of the quantization constants per parameter.
CONSTANT_BITS_PER_PARAM = {
    "without DQ (fp32 absmax, block 64)": (0.5, "Sec. 3, 32/64"),
    "with DQ (8-bit absmax, block 64; fp32 constants, block 256)": (0.127, "Sec. 3, 8/64 + 32/(64*256)"),
}

# Sec. 3 / App. B.2 settings the paper preset follows.
BLOCKSIZE = (64, "Sec. 3")
DQ_BLOCKSIZE = (256, "Sec. 3")
LORA_R = (64, "App. B.2")
LORA_ALPHA = (16, "App. B.2")
LORA_DROPOUT_UP_TO_13B = (0.1, "App. B.2")

# Sec. 1 (Introduction): average GPU memory to finetune a 65B model, 16-bit full finetuning vs QLoRA
# (">780GB of GPU memory to <48GB").
MEMORY_65B_GB = {
    "16-bit full finetuning": (780, "Sec. 1, >780 GB"),
    "QLoRA": (48, "Sec. 1, <48 GB"),
}
