"""The models AWQ quantizes here, each as a float model whose transformer blocks hold plain ``nn.Linear`` layers.

CLIP's towers (open_clip) compute attention with ``nn.MultiheadAttention``, whose q/k/v projection is one fused
parameter and whose output projection is a Linear subclass; :func:`split_attention_` replaces each by
:class:`SplitAttention`, with four ``nn.Linear`` layers and the same output, so the one path that finds the linear
layers of a block (``awq.linear_names``) and groups q, k, v (``awq.input_groups``) serves every model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import NnqError


class SplitAttention(nn.Module):
    """nn.MultiheadAttention with separate q_proj, k_proj, v_proj, out_proj linear layers (same math and call)."""

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, batch_first: bool = True):
        super().__init__()
        self.embed_dim, self.num_heads, self.batch_first = embed_dim, num_heads, batch_first
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @classmethod
    @torch.no_grad()
    def from_mha(cls, mha: nn.MultiheadAttention) -> "SplitAttention":
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise NnqError("only plain nn.MultiheadAttention (same q/k/v width, no bias_k, no zero attention) "
                           "can be split")
        bias = mha.in_proj_bias is not None
        new = cls(mha.embed_dim, mha.num_heads, bias, mha.batch_first).to(mha.in_proj_weight.device)
        for lin, w in zip((new.q_proj, new.k_proj, new.v_proj), mha.in_proj_weight.chunk(3, 0)):
            lin.weight.copy_(w)
        if bias:
            for lin, b in zip((new.q_proj, new.k_proj, new.v_proj), mha.in_proj_bias.chunk(3)):
                lin.bias.copy_(b)
            new.out_proj.bias.copy_(mha.out_proj.bias)
        new.out_proj.weight.copy_(mha.out_proj.weight)
        return new

    def forward(self, query, key, value, need_weights=False, attn_mask=None, key_padding_mask=None, **_):
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, lq, _ = query.shape
        lk = key.shape[1]
        q = self.q_proj(query).view(b, lq, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, Lq, d]
        k = self.k_proj(key).view(b, lk, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, Lk, d]
        v = self.v_proj(value).view(b, lk, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, Lk, d]
        mask = None
        if attn_mask is not None:
            mask = (torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill(attn_mask, float("-inf"))
                    if attn_mask.dtype == torch.bool else attn_mask.to(q.dtype))
            if mask.dim() == 3:  # [B * H, Lq, Lk]
                mask = mask.view(b, self.num_heads, lq, lk)
        if key_padding_mask is not None:
            kpm = key_padding_mask if key_padding_mask.dtype == torch.bool else key_padding_mask < 0
            add = torch.zeros(b, 1, 1, lk, dtype=q.dtype, device=q.device).masked_fill(kpm[:, None, None, :],
                                                                                      float("-inf"))
            mask = add if mask is None else mask + add
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, Lq, d]
        out = self.out_proj(out.transpose(1, 2).reshape(b, lq, self.embed_dim))
        return (out if self.batch_first else out.transpose(0, 1)), None


def split_attention_(model: nn.Module) -> int:
    """Replace every nn.MultiheadAttention of ``model`` by its SplitAttention (in place); returns how many."""
    from papers.awq.awq import replace_module_

    names = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    for n in names:
        replace_module_(model, n, SplitAttention.from_mha(model.get_submodule(n)))
    return len(names)


def in_block(name: str) -> bool:
    """Whether a linear layer sits inside a transformer block (open_clip resblocks, Hugging Face encoder layers)."""
    return ".resblocks." in name or name.startswith("resblocks.") or "encoder.layer." in name
