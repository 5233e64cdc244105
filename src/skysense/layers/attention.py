"""Multi-head self-attention with an optional key-padding mask.

Parameter names follow timm's ``Attention`` (``qkv``, ``proj``) so that timm ViT weights load unchanged.
Two numerically equivalent paths: PyTorch's fused ``scaled_dot_product_attention`` (default) and an explicit
softmax(QKᵀ/√d)·V, kept for testing and for exporters that cannot trace SDPA. Sequences of at most
:data:`SHORT_SEQUENCE` tokens take the explicit path even when the fused one is chosen, on a GPU always and on a CPU
when no gradient flows (inference): the temporal fusion's per-location sequences (2 to 32 tokens, hundreds of
thousands of them) are where the fused kernels do worst. On an H100, cuDNN's kernels work on tiles of 64 to 128
queries and were mostly idle: 61 % of a paper pretraining step's GPU time was attention over sequences of 2 and 23
tokens (issue 15). On a 2-core CPU the fused forward took 1.1–5× the explicit one's time for 2 to 64 tokens (fp32;
2–7× in bf16), but its forward and backward 1.3–1.7× less, so training on a CPU keeps it. For such lengths the
(B, heads, N, N) logits are no larger than q, k and v.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

SHORT_SEQUENCE = 64  # sequences this short attend by the explicit path on CUDA, and on a CPU without gradients


def padding_mask_to_bias(key_valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention bias from a key-validity mask.

    Args:
        key_valid: (B, N) bool, True where the key is a real token, False where it is padding.
        dtype: dtype of the attention logits.

    Returns:
        (B, 1, 1, N) tensor: 0 for valid keys, the dtype's most negative value for padding (not -inf, so that a
        row whose keys are all padded gives a uniform softmax instead of NaN).
    """
    bias = torch.zeros(key_valid.shape, dtype=dtype, device=key_valid.device)
    bias.masked_fill_(~key_valid, torch.finfo(dtype).min)
    return bias[:, None, None, :]


class Attention(nn.Module):
    """Standard multi-head self-attention, (B, N, C) → (B, N, C)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        fused_attn: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over the sequence.

        Args:
            x: tokens (B, N, C).
            key_valid: optional (B, N) bool, False for padded tokens that no query may attend to.

        Returns:
            (B, N, C).
        """
        qkv = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        bias = None if key_valid is None else padding_mask_to_bias(key_valid, q.dtype)
        short = x.shape[-2] <= SHORT_SEQUENCE and (x.is_cuda or not q.requires_grad)  # (no gradient: inference)
        if self.fused_attn and not short:
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=self.attn_drop.p if self.training else 0.0
            )
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, heads, N, N)
            if bias is not None:
                attn = attn + bias
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = rearrange(x, "b h n d -> b n (h d)")
        return self.proj_drop(self.proj(x))
