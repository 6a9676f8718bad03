"""Binarized Neural Networks (Courbariaux, Hubara et al., NeurIPS 2016): public API."""

from papers.bnn.artifact import load_packed, pack_signs, save_packed, unpack_signs
from papers.bnn.bnn import (BinaryActivation, BinaryConv2d, BinaryLinear, ClipLatentWeights, SignSTE, WeightSignSTE, binarize,
                            binarize_weights_, clip_latent_weights_, sign_ste, square_hinge_loss)

__all__ = ["BinaryActivation", "BinaryConv2d", "BinaryLinear", "ClipLatentWeights", "SignSTE", "WeightSignSTE", "binarize",
           "binarize_weights_", "clip_latent_weights_", "sign_ste", "square_hinge_loss", "load_packed",
           "pack_signs", "save_packed", "unpack_signs"]
