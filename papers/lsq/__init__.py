"""Learned Step Size Quantization (Esser et al., ICLR 2020): public API."""

from papers.lsq.lsq import (GRAD_SCALES, INITS, LsqConv2d, LsqLinear, LsqQuantizer, LsqQuantizeSTE, grad_scale_factor,
                            init_step, lsq_layers, lsq_quantize, quant_range, quantize_model_, step_sizes)

__all__ = ["GRAD_SCALES", "INITS", "LsqConv2d", "LsqLinear", "LsqQuantizer", "LsqQuantizeSTE", "grad_scale_factor",
           "init_step", "lsq_layers", "lsq_quantize", "quant_range", "quantize_model_", "step_sizes"]
