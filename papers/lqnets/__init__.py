"""LQ-Nets: Learned Quantization (Zhang, Yang, Ye, Hua, ECCV 2018): public API."""

from papers.lqnets.lqnets import (LqConv2d, LqLinear, LqQuantizer, code_bits, encode, level_codes, lq_layers,
                                  lq_quantizers, qem, quantization_error, quantize_model_, solve_basis,
                                  sorted_levels, update_bases_)

__all__ = ["LqConv2d", "LqLinear", "LqQuantizer", "code_bits", "encode", "level_codes", "lq_layers", "lq_quantizers",
           "qem", "quantization_error", "quantize_model_", "solve_basis", "sorted_levels", "update_bases_"]
