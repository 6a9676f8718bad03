"""PTQ4ViT: post-training quantization with twin uniform quantization (Yuan et al., ECCV 2022): public API."""

from papers.ptq4vit.ptq4vit import (BASE_PTQ, PTQ4VIT, MatMul, PtqConv2d, PtqLinear, PtqMatMul, SearchSettings,
                                    apply_scales_, capture, distance, load_scales, quantize_uniform, save_scales,
                                    search_linear, search_matmul, search_model, twin_gelu, twin_softmax)

__all__ = ["BASE_PTQ", "PTQ4VIT", "MatMul", "PtqConv2d", "PtqLinear", "PtqMatMul", "SearchSettings", "apply_scales_",
           "capture", "distance", "load_scales", "quantize_uniform", "save_scales", "search_linear", "search_matmul",
           "search_model", "twin_gelu", "twin_softmax"]
