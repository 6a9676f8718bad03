"""DoReFa-Net (Zhou et al., arXiv 1606.06160): public API."""

from papers.dorefa.dorefa import (FLOAT_BITS, DorefaBinaryWeightSTE, DorefaConv2d, DorefaGradQuantSTE, DorefaLinear,
                                  DorefaQuantizeSTE, codes_to_weights, dorefa_layers, quantize_activation,
                                  quantize_grad_ste, quantize_gradient, quantize_k, quantize_k_ste, quantize_model_,
                                  quantize_weight, weight_levels)

__all__ = ["FLOAT_BITS", "DorefaBinaryWeightSTE", "DorefaConv2d", "DorefaGradQuantSTE", "DorefaLinear",
           "DorefaQuantizeSTE", "codes_to_weights", "dorefa_layers", "quantize_activation", "quantize_grad_ste",
           "quantize_gradient", "quantize_k", "quantize_k_ste", "quantize_model_", "quantize_weight", "weight_levels"]
