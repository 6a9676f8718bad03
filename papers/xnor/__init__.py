"""XNOR-Net and Binary-Weight-Networks (Rastegari et al., ECCV 2016): public API."""

from papers.xnor.engine import BinaryEngine, to_engine
from papers.xnor.kernel import (backend_name, binary_gemm, pack_bits, pack_conv_weight, pack_signs, unpack_bits,
                                xnor_conv2d, xnor_conv2d_counts, xnor_linear)
from papers.xnor.models import SmallConvNet, XnorLeNet5, XnorResNet18, XnorResNetCifar, build
from papers.xnor.packed import (PackedBwnConv2d, PackedBwnLinear, PackedXnorConv2d, PackedXnorLinear,
                                convert_to_packed, load_packed, save_packed)
from papers.xnor.xnor import (BwnConv2d, BwnLinear, SignSTE, WeightSignSTE, XnorConv2d, XnorLinear, binarize,
                              binarize_model_, binary_layers, bwn_alpha, input_beta, scaling_map_k, sign_ste,
                              weight_sign_ste)

__all__ = ["BwnConv2d", "BwnLinear", "XnorConv2d", "XnorLinear", "SignSTE", "WeightSignSTE", "binarize",
           "binarize_model_", "binary_layers", "bwn_alpha", "input_beta", "scaling_map_k", "sign_ste",
           "weight_sign_ste", "backend_name", "binary_gemm", "pack_bits", "pack_conv_weight", "pack_signs",
           "unpack_bits", "xnor_conv2d", "xnor_conv2d_counts", "xnor_linear", "PackedBwnConv2d", "PackedBwnLinear",
           "PackedXnorConv2d", "PackedXnorLinear", "convert_to_packed", "load_packed", "save_packed",
           "SmallConvNet", "XnorLeNet5", "XnorResNet18", "XnorResNetCifar", "build", "BinaryEngine",
           "to_engine"]
