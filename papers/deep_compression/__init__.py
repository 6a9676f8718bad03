"""Deep Compression (Han, Mao, Dally, ICLR 2016): pruning, trained quantization, Huffman coding."""

from papers.deep_compression.format import DecodedModel, decode, encode, load_into
from papers.deep_compression.huffman import (canonical_codes, entropy_bits, huffman_code_lengths, huffman_decode,
                                             huffman_encode, positions_from_relative, relative_indices)
from papers.deep_compression.prune import PruneMasks, density_schedule, layer_threshold, prune_mask, quality_for_density
from papers.deep_compression.share import (CodebookLookup, SharedConv2d, SharedLinear, codebook_lookup, init_centroids,
                                           kmeans_1d, share_weights_)

__all__ = [
    "CodebookLookup", "DecodedModel", "PruneMasks", "SharedConv2d", "SharedLinear", "canonical_codes",
    "codebook_lookup", "decode", "density_schedule", "encode", "entropy_bits", "huffman_code_lengths",
    "huffman_decode", "huffman_encode", "init_centroids", "kmeans_1d", "layer_threshold", "load_into",
    "positions_from_relative", "prune_mask", "quality_for_density", "relative_indices", "share_weights_",
]
