"""QLoRA (Dettmers et al., NeurIPS 2023) applied to CLIP: public API."""

from papers.qlora_clip.lora import (IMAGE_TOWER_TARGETS, Int4Linear, SplitMultiheadAttention, add_lora_,
                                    base_weight_storage, merge_lora_, quantize_linears_, select_modules,
                                    split_attention_, unmerge_lora_)
from papers.qlora_clip.nf4 import (QuantizedTensor, bits_per_param_formula, code_book, dequantize_blockwise,
                                   double_dequantize, double_quantize, dynamic_code_book, fake_quantize_4bit,
                                   fp4_code_book, int4_code_book, normal_float_code_book, pack_4bit,
                                   quantization_error, quantize_4bit, quantize_blockwise, unpack_4bit)

__all__ = ["IMAGE_TOWER_TARGETS", "Int4Linear", "SplitMultiheadAttention", "add_lora_", "base_weight_storage",
           "merge_lora_", "quantize_linears_", "select_modules", "split_attention_", "unmerge_lora_",
           "QuantizedTensor", "bits_per_param_formula", "code_book", "dequantize_blockwise", "double_dequantize",
           "double_quantize", "dynamic_code_book", "fake_quantize_4bit", "fp4_code_book", "int4_code_book",
           "normal_float_code_book", "pack_4bit", "quantization_error", "quantize_4bit", "quantize_blockwise",
           "unpack_4bit"]
