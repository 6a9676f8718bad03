"""QLoRA's model surgery on an open_clip CLIP: split attention, 4-bit base layers, LoRA adapters.

QLoRA (Dettmers et al., NeurIPS 2023, arXiv 2305.14314) freezes a 4-bit base model and trains LoRA adapters
(Hu et al., 2021) through it: Y = X dequant(c1, c2, W^NF4) + X L1 L2 (Eq. 5). Sec. 4 finds that adapters on
*all* linear layers are needed to match 16-bit fine-tuning. The training path here uses the real libraries:
bitsandbytes ``Linear4bit`` (NF4 or FP4, with double quantization) for the frozen base and peft LoRA for the
adapters; our own simulated Int4 layer (`Int4Linear`, from nf4.py) stands in for the Int4 data type that
bitsandbytes does not offer.

Which layers (open_clip ViT image tower, MiniLM text tower):
- open_clip's attention is ``nn.MultiheadAttention``, whose q/k/v projection is one fused ``in_proj_weight``
  parameter (not an ``nn.Linear``) and whose ``out_proj`` is read as a bare weight inside
  ``F.multi_head_attention_forward`` — a LoRA wrapper or a 4-bit layer put there would be bypassed or break.
  `split_attention_` therefore replaces every ``nn.MultiheadAttention`` by `SplitMultiheadAttention`, with
  ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` as ordinary ``nn.Linear`` layers holding the same weights
  (an exact re-parametrisation; tests/test_method.py checks equal outputs).
- Quantized (4-bit base): every ``nn.Linear`` of both towers: image tower q/k/v/out_proj, mlp.c_fc,
  mlp.c_proj; text tower query/key/value, attention.output.dense, intermediate.dense, output.dense and the
  text projection. Kept in fp32 (as the paper keeps non-linear-layer parameters in 16 bit): the patch
  embedding convolution, class/positional embeddings, LayerNorms, the image projection matrix, token
  embeddings, the temperature.
- Adapted (LoRA): every linear layer of the image tower (`IMAGE_TOWER_TARGETS`). The text tower is frozen and
  used once to build the zero-shot head (the class-prompt embeddings), so adapters there would receive no
  gradient.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from common.errors import NnqError
from common.evaluate import StoredField
from common.models import SplitMultiheadAttention, split_attention_  # noqa: F401 (part of this package's API)
from papers.qlora_clip import nf4

IMAGE_TOWER_TARGETS = r"^(model\.)?visual\.transformer\.resblocks\.\d+\.(attn\.(q|k|v|out)_proj|mlp\.c_fc|mlp\.c_proj)$"
ALL_LINEAR = r".*"
BASE_QUANT_TYPES = ("fp32", "nf4", "fp4", "int4")


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def linear_names(model: nn.Module) -> list[str]:
    """Names of all ``nn.Linear`` modules (including 4-bit subclasses), LoRA wrappers looked through."""
    out = []
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear) and not _is_lora_inner(n):
            out.append(n.removesuffix(".base_layer"))
    return out


def _is_lora_inner(name: str) -> bool:
    return bool(re.search(r"\.lora_(A|B)\.", name + ".")) or name.endswith(("lora_A", "lora_B"))


def select_modules(model: nn.Module, pattern: str | Sequence[str]) -> list[str]:
    """The linear layers whose full name matches ``pattern`` (a regex, or a list of exact names / suffixes).

    Raises:
        NnqError: nothing matches; the message lists the available linear layers.
    """
    names = linear_names(model)
    if isinstance(pattern, str):
        chosen = [n for n in names if re.fullmatch(pattern, n)]
    else:
        chosen = [n for n in names if any(n == p or n.endswith("." + p) for p in pattern)]
    if not chosen:
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
        raise NnqError(f"LoRA/quantization target {pattern!r} matches no linear layer; available: {shown or 'none'}")
    return chosen


# ------------------------------------------------------------------------------------ the 4-bit base layers


class Int4Linear(nn.Linear):
    """Frozen linear layer with blockwise absmax 4-bit weights (our nf4.py), simulated in fp32.

    ``weight`` holds the dequantized values (what the matmul uses); ``packed_weight`` is the real packed storage
    (4-bit codes + double-quantized constants) whose size `base_weight_storage` reports.
    Used for the Int4 data type of Table 2 (bitsandbytes has no Int4), and for NF4/FP4 through our own code.
    """

    weight_bits = 4
    act_bits = 32

    @classmethod
    def from_float(cls, m: nn.Linear, quant_type: str = "int4", double_quant: bool = True,
                   blocksize: int = nf4.BLOCKSIZE) -> Int4Linear:
        new = cls(m.in_features, m.out_features, bias=m.bias is not None, device=m.weight.device)
        new.quant_type = quant_type
        new.packed_weight = nf4.quantize_4bit(m.weight.detach(), quant_type, blocksize, double_quant)
        with torch.no_grad():
            new.weight.copy_(new.packed_weight.dequantize().to(m.weight.dtype))
            if m.bias is not None:
                new.bias.copy_(m.bias.detach())
        new.weight.requires_grad_(False)
        return new


def _bnb_linear4bit(m: nn.Linear, quant_type: str, double_quant: bool, compute_dtype: torch.dtype) -> nn.Linear:
    import bitsandbytes as bnb

    q = bnb.nn.Linear4bit(m.in_features, m.out_features, bias=m.bias is not None, compute_dtype=compute_dtype,
                          compress_statistics=double_quant, quant_type=quant_type, device="meta")
    q.weight = bnb.nn.Params4bit(m.weight.detach().float().cpu(), requires_grad=False,
                                 compress_statistics=double_quant, quant_type=quant_type, blocksize=nf4.BLOCKSIZE)
    if m.bias is not None:
        q.bias = nn.Parameter(m.bias.detach().clone(), requires_grad=False)
    q.weight_bits, q.act_bits = 4, 32
    # bitsandbytes >= 0.47 repacks CPU weights in eval mode into an AVX512-BF16 layout (then used in training
    # too, where its in-place bias add fails under autograd); keep the canonical NF4 layout and fp32 compute.
    q.support_avx512bf16_for_cpu = False
    return q.to(m.weight.device)  # Params4bit quantizes on its first move to a device


def quantize_linears_(model: nn.Module, quant_type: str, *, targets: str | Sequence[str] = ALL_LINEAR,
                      double_quant: bool = True, backend: str = "bnb",
                      compute_dtype: torch.dtype = torch.float32) -> list[str]:
    """Replaces the selected ``nn.Linear`` layers by frozen 4-bit layers, in place.

    Args:
        model: the model (after `split_attention_`, so attention projections are linear layers).
        quant_type: "nf4" | "fp4" (bitsandbytes ``Linear4bit``) or "int4" (our `Int4Linear`); "fp32" is a no-op.
        targets: regex or names of the layers to quantize (default: every linear layer).
        double_quant: quantize the absmax constants again (Sec. 3).
        backend: "bnb" (bitsandbytes, NF4/FP4) or "ours" (`Int4Linear` with our nf4.py for any 4-bit type).
        compute_dtype: dtype of the dequantized weight in the matmul (fp32 on CPU; the paper uses bf16).

    Returns:
        The names of the quantized layers.
    """
    if quant_type not in BASE_QUANT_TYPES:
        raise NnqError(f"unknown quant type {quant_type!r}; use one of {', '.join(BASE_QUANT_TYPES)}")
    if backend not in ("bnb", "ours"):
        raise NnqError(f"unknown backend {backend!r}; use 'bnb' or 'ours'")
    if quant_type == "fp32":
        return []
    names = select_modules(model, targets)
    for name in names:
        m = model.get_submodule(name)
        if quant_type == "int4" or backend == "ours":
            new = Int4Linear.from_float(m, quant_type, double_quant)
        else:
            new = _bnb_linear4bit(m, quant_type, double_quant, compute_dtype)
        _set_module(model, name, new)
    if quant_type in ("nf4", "fp4") and backend == "bnb":
        model.is_loaded_in_4bit = True  # tells peft to wrap Linear4bit with its bitsandbytes-aware LoRA layer
    return names


# ------------------------------------------------------------------------------------------------ LoRA


def add_lora_(model: nn.Module, targets: str | Sequence[str] = IMAGE_TOWER_TARGETS, *, r: int = 8,
              alpha: float = 16, dropout: float = 0.0) -> list[str]:
    """Injects peft LoRA adapters into the selected linear layers and freezes everything else.

    Eq. (3): Y = X W + s X L1 L2 with L1 = lora_A [r, in]^T, L2 = lora_B [out, r]^T, s = alpha / r (on a 4-bit
    base W is dequantized on the fly, Eq. 5);
    lora_B starts at zero, so the adapted model equals the base model at initialisation.

    Returns:
        The names of the adapted layers.

    Raises:
        NnqError: no layer matches ``targets`` (the message lists the available ones).
    """
    import peft

    names = select_modules(model, targets)
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none")
    peft.inject_adapter_in_model(cfg, model)
    for n, p in model.named_parameters():
        p.requires_grad_(".lora_" in n)
    return names


def lora_layers(model: nn.Module) -> list[nn.Module]:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def merge_lora_(model: nn.Module) -> None:
    """W <- W + s * B A in every LoRA layer (for 4-bit bases peft dequantizes, adds and requantizes)."""
    for m in lora_layers(model):
        m.merge()


def unmerge_lora_(model: nn.Module) -> None:
    for m in lora_layers(model):
        m.unmerge()


# ----------------------------------------------------------------------------------------- accounting


def trainable_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def base_weight_storage(model: nn.Module, names: Iterable[str] | None = None) -> dict:
    """Bytes of the base linear layers' weights, measured from the stored tensors.

    fp32 ``nn.Linear``: the weight tensor. bitsandbytes ``Linear4bit``: packed uint8 codes, the 8-bit (or fp32)
    absmax, the nested fp32 absmax and offset. `Int4Linear`: its packed ``packed_weight`` tensors. The code books
    (16 and 256 fp32 values) are constants of the data type, counted once per model in ``codebook_bytes``.
    Biases are not base weights (they stay fp32 in every variant) and are excluded.

    Args:
        model: the model.
        names: the linear layers to count (default: all linear layers, LoRA wrappers looked through).

    Returns:
        dict with params, bytes (incl. code books), codebook_bytes, fp32_bytes, bits_per_param, ratio_to_fp32.
    """
    import bitsandbytes as bnb

    names = linear_names(model) if names is None else list(names)
    total = params = 0
    books: dict[tuple, int] = {}
    for name in names:
        m = model.get_submodule(name)
        m = getattr(m, "base_layer", m)
        if isinstance(m, bnb.nn.Linear4bit) and getattr(m.weight, "quant_state", None) is not None:
            qs = m.weight.quant_state
            params += math.prod(qs.shape)
            total += _nbytes(m.weight.data) + _nbytes(qs.absmax)
            books[("4bit", qs.quant_type)] = _nbytes(qs.code)
            if qs.nested:
                total += _nbytes(qs.state2.absmax) + qs.offset.element_size() * max(qs.offset.numel(), 1)
                books[("dynamic8",)] = _nbytes(qs.state2.code)
        elif isinstance(m, Int4Linear):
            params += m.weight.numel()
            total += m.packed_weight.nbytes()
            books[("4bit", m.quant_type)] = 16 * 4
            if m.packed_weight.double_quant:
                books[("dynamic8",)] = 256 * 4
        else:
            params += m.weight.numel()
            total += _nbytes(m.weight)
    cb = sum(books.values())
    fp32 = 4 * params
    return {"params": params, "bytes": total + cb, "codebook_bytes": cb, "fp32_bytes": fp32,
            "bits_per_param": 8 * (total + cb) / max(params, 1), "ratio_to_fp32": (total + cb) / max(fp32, 1)}


def stored_fields(model: nn.Module) -> list[StoredField]:
    """The model's stored representation, field by field, for ``common.evaluate.model_bits``.

    A 4-bit base layer (bitsandbytes ``Linear4bit`` or `Int4Linear`) stores its weight as 4-bit codes, one 8-bit
    code per block of 64 for the absmax constants c2 and per block of 256 one fp32 constant c1 plus one fp32
    offset (Sec. 3, double quantization; without it one fp32 absmax per block). The code books (16 levels of the
    4-bit type, 256 of the 8-bit one) are constants of the data types, counted once per model. Every other
    parameter (biases, LoRA adapters, LayerNorms, embeddings) and every floating-point buffer the state dict keeps
    (the zero-shot head) counts 32 bits.
    """
    import bitsandbytes as bnb

    fields: list[StoredField] = []
    books: dict[str, int] = {}
    for mod_name, m in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        skip = set()
        if isinstance(m, bnb.nn.Linear4bit) and getattr(m.weight, "quant_state", None) is not None:
            qs = m.weight.quant_state
            fields.append(StoredField.fixed(prefix + "weight.codes", math.prod(qs.shape), 4))
            if qs.nested:
                fields += [StoredField.fixed(prefix + "weight.absmax", qs.absmax.numel(), 8),
                           StoredField.fixed(prefix + "weight.absmax2", qs.state2.absmax.numel(), 32),
                           StoredField.fixed(prefix + "weight.offset", 1, 32)]
                books["dynamic8"] = qs.state2.code.numel()
            else:
                fields.append(StoredField.fixed(prefix + "weight.absmax", qs.absmax.numel(), 32))
            books[qs.quant_type] = qs.code.numel()
            skip.add("weight")
        elif isinstance(m, Int4Linear):
            q = m.packed_weight
            fields.append(StoredField.fixed(prefix + "weight.codes", math.prod(q.shape), 4))
            if q.double_quant:
                fields += [StoredField.fixed(prefix + "weight.absmax", q.absmax.numel(), 8),
                           StoredField.fixed(prefix + "weight.absmax2", q.absmax2.numel(), 32),
                           StoredField.fixed(prefix + "weight.offset", 1, 32)]
                books["dynamic8"] = 256
            else:
                fields.append(StoredField.fixed(prefix + "weight.absmax", q.absmax.numel(), 32))
            books[m.quant_type] = 16
            skip.add("weight")  # the fp32 `weight` is the dequantized working copy, not what is stored
        for p_name, p in m.named_parameters(recurse=False):
            if p_name not in skip:
                fields.append(StoredField.fixed(prefix + p_name, p.numel(), 32))
        for b_name, b in m.named_buffers(recurse=False):
            if b.is_floating_point() and b_name not in m._non_persistent_buffers_set:
                fields.append(StoredField.fixed(prefix + b_name, b.numel(), 32))
    fields += [StoredField.fixed(f"code_book.{name}", n, 32) for name, n in sorted(books.items())]
    return fields


def _nbytes(t: torch.Tensor) -> int:
    """Bytes of the tensor's own elements (its storage may be shared with a larger buffer)."""
    return t.numel() * t.element_size()


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Training-state bytes from the real tensors: parameters+buffers (incl. 4-bit storage), gradients, optimizer."""
    weights = sum(_nbytes(t) for t in model.state_dict(keep_vars=True).values() if torch.is_tensor(t))
    grads = sum(_nbytes(p.grad) for p in model.parameters() if p.grad is not None)
    opt = 0
    if optimizer is not None:
        for st in optimizer.state.values():
            opt += sum(_nbytes(v) for v in st.values() if torch.is_tensor(v) and v.dim() > 0)
    return {"weights": weights, "grads": grads, "optimizer": opt, "total": weights + grads + opt}
