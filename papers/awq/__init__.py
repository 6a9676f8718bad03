"""AWQ: Activation-aware Weight Quantization (Lin et al., MLSys 2024): public API."""

from papers.awq.awq import (AwqLinear, activation_scale, apply_awq_, apply_keep_fp_, apply_rtn_, capture_inputs,
                            dequantize, group_params, input_groups, linear_names, load_artifact, output_error,
                            pseudo_quantize, quantize_codes, salient_channels, save_artifact, search_clip,
                            search_model, search_scale)

__all__ = ["AwqLinear", "activation_scale", "apply_awq_", "apply_keep_fp_", "apply_rtn_", "capture_inputs",
           "dequantize", "group_params", "input_groups", "linear_names", "load_artifact", "output_error",
           "pseudo_quantize", "quantize_codes", "salient_channels", "save_artifact", "search_clip", "search_model",
           "search_scale"]
