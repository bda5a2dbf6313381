"""
FlexAttention for nanoPE's attention (model.causal_attention): which encodings it can run, where,
and the call itself. An orthogonal encoding whose bias has a score_mod (ALiBi, T5, Shaw, KERPLE,
Sandwich, FIRE, ...) gets its bias evaluated inside the kernel, element-wise, with the causal
block mask skipping the blocks above the diagonal: no (block, T) bias tensor, no masked-out
blocks computed. Selected by GPTConfig.attn_backend: "auto" (CUDA), "sdpa", "flex".
"""

import functools

import torch


def _causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def _causal_block_mask(T, device):
    """FlexAttention's sparse causal mask: blocks above the diagonal are skipped, not computed."""
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(_causal, None, None, T, T, device=device)


# outside torch.compile one mask per length is kept; inside, the traced graph makes it (cheaply)
_cached_causal_block_mask = functools.lru_cache(maxsize=8)(_causal_block_mask)


@functools.cache
def _compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


ATTN_BACKENDS = ("auto", "sdpa", "flex")
# FlexAttention exists from torch 2.5. Gradients reaching the tensors a score_mod captures (T5's
# table, Shaw's vectors, learnable slopes) came in 2.6 (pytorch#137452), computed on CUDA only:
# on CPU flex_attention refuses inputs that require grad
FLEX_FORWARD = torch.__version__ >= (2, 5)
FLEX_BACKWARD = torch.__version__ >= (2, 6)


def use_flex(backend, device_type, grad):
    """Whether attention on `device_type` runs through FlexAttention, for an encoding that has a
    score_mod: "sdpa" never, "auto" on CUDA, "flex" wherever FlexAttention runs (eagerly off
    CUDA: an unfused reference, for tests). grad: gradients are wanted (training); FlexAttention
    computes them on CUDA only, elsewhere attention falls back to SDPA."""
    if backend == "sdpa" or (backend == "auto" and device_type != "cuda"):
        return False
    return (device_type == "cuda" and FLEX_BACKWARD) if grad else FLEX_FORWARD


def has_flex_path(pe):
    """Whether attention can run encoding pe through FlexAttention: an orthogonal encoding whose
    bias has a score_mod (asked here of a dummy query)."""
    if not (pe.has_bias and pe.orthogonal and not pe.explicit):
        return False
    return pe.score_mod(torch.zeros(1, pe.n_head, 1, pe.head_dim), torch.zeros(1)) is not None


def flex_training_note(config, pe):
    """Why training on CUDA runs pe's attention on SDPA although config.attn_backend asks for
    FlexAttention (None if it does not): the model prints it once."""
    if config.attn_backend == "sdpa" or not has_flex_path(pe):
        return None
    if not FLEX_BACKWARD:
        return (
            f"torch {torch.__version__} cannot take gradients through a FlexAttention score_mod's"
            " tables (needs torch >= 2.6): on CUDA, training attention runs on SDPA"
        )
    if config.dropout > 0:
        return (
            f"FlexAttention has no attention dropout: with dropout={config.dropout}, training"
            " attention runs on SDPA (evaluation uses FlexAttention on CUDA)"
        )
    return None


def flex_causal_attention(q, k, v, pos, pe, mod, scale):
    """Causal attention with the bias as a FlexAttention score_mod: no (T, T) bias tensor and
    no masked-out blocks are ever computed; gradients reach what mod captures (tables, slopes).
    For orthogonal encodings with a bias (ALiBi, T5, Shaw, damped RoPE with decay="weight");
    rotations are applied first, as in the SDPA path."""
    from torch.nn.attention.flex_attention import flex_attention

    if pe.has_rotate:
        q, k = pe.rotate(q, k, pos, pos)
    T = q.size(2)
    if torch.compiler.is_compiling():  # in a compiled model: traced and fused with the rest
        mask = _causal_block_mask(T, q.device)
        return flex_attention(q, k, v, score_mod=mod, block_mask=mask, scale=scale)
    mask = _cached_causal_block_mask(T, str(q.device))
    # an eager model on CUDA still gets flex compiled (the unfused one materialises T x T scores)
    flex = _compiled_flex_attention() if q.device.type == "cuda" else flex_attention
    return flex(q, k, v, score_mod=mod, block_mask=mask, scale=scale)
