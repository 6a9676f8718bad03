"""The models AWQ quantizes here, each as a float model whose transformer blocks hold plain ``nn.Linear`` layers.

CLIP's towers (open_clip) compute attention with ``nn.MultiheadAttention``, whose q/k/v projection is one fused
parameter and whose output projection is a Linear subclass; :func:`split_attention_` replaces each by
:class:`common.models.SplitMultiheadAttention`, with four ``nn.Linear`` layers and the same output, so the one path that finds the linear
layers of a block (``awq.linear_names``) and groups q, k, v (``awq.input_groups``) serves every model.
"""

from __future__ import annotations

from common.models import SplitMultiheadAttention, split_attention_  # noqa: F401 (one split for every paper)


def in_block(name: str) -> bool:
    """Whether a linear layer sits inside a transformer block (open_clip resblocks, Hugging Face encoder layers)."""
    return ".resblocks." in name or name.startswith("resblocks.") or "encoder.layer." in name
