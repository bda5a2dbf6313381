"""
Causal attention under a positional encoding, one route per kind of need, the same on CPU and GPU
(docs/encodings.md, "How attention runs them"):

    fused   orthogonal rotation or nothing (RoPE, NoPE, absolute): one fused causal SDPA call;
    flex    a bias with a score_mod (ALiBi, T5, ...), on CUDA or when asked for: FlexAttention;
    blocks  every other bias or a non-orthogonal rotation: query blocks through SDPA, the causal
            mask folded into the float bias (SDPA refuses attn_mask with is_causal);
    scores  the same blocks through the encoding's explicit scores() (multiplicative encodings).

route() makes the decision; causal_attention() follows it; preflight reports it.
"""

import functools
import math
from contextlib import nullcontext

import torch
from torch.nn import functional as F

from encoding import compute_dtype

ATTN_BACKENDS = ("auto", "sdpa", "flex")
# FlexAttention exists from torch 2.5; gradients reaching the tensors a score_mod captures (T5's
# table, slopes) from 2.6 (pytorch#137452), computed on CUDA only
FLEX_FORWARD = torch.__version__ >= (2, 5)
FLEX_BACKWARD = torch.__version__ >= (2, 6)


def causal_mask(t0, t1, device):
    """Boolean (t1 - t0, t1) mask, True where query t0 + i may see key j (j <= t0 + i)."""
    return torch.ones(t1 - t0, t1, dtype=torch.bool, device=device).tril(diagonal=t0)


def no_autocast(device_type):
    """Autocast off for one kernel call (on devices where autocast exists)."""
    if device_type in ("cuda", "cpu"):
        return torch.autocast(device_type=device_type, enabled=False)
    return nullcontext()


def use_flex(backend, device_type, grad):
    """Whether a bias with a score_mod runs through FlexAttention: "sdpa" never, "auto" on CUDA,
    "flex" wherever it runs (eagerly off CUDA: an unfused reference, for tests). FlexAttention
    computes gradients on CUDA only: elsewhere training falls back to SDPA blocks."""
    if backend == "sdpa" or (backend == "auto" and device_type != "cuda"):
        return False
    return (device_type == "cuda" and FLEX_BACKWARD) if grad else FLEX_FORWARD


def has_flex_path(pe):
    """Whether pe can run through FlexAttention: an orthogonal bias whose score_mod exists (asked
    of a dummy query: some encodings have one only in some settings)."""
    if not (pe.has_bias and pe.orthogonal and not pe.explicit):
        return False
    return pe.score_mod(torch.zeros(1, pe.n_head, 1, pe.head_dim), torch.zeros(1)) is not None


def route(
    pe,
    pos,
    backend,
    device_type,
    grad,
    dropout_p=0.0,
    explicit=False,
    decoding=False,
    compiled=None,
):
    """Which route attention takes for encoding pe (see the module docstring). compiled: inside
    torch.compile (default: whether it is tracing now)."""
    compiled = torch.compiler.is_compiling() if compiled is None else compiled
    if explicit or pe.explicit:
        return "scores"
    if pe.orthogonal and not pe.has_bias:
        return "fused"
    # flex: 1-D positions (score_mods index a position vector), no attention dropout (flex has
    # none), not decoding (one query row needs no block mask)
    flex = pe.orthogonal and pos.dim() == 1 and dropout_p == 0 and not decoding
    flex = flex and not (grad and compiled and not pe.compiled_flex_grad)
    if flex and use_flex(backend, device_type, grad) and has_flex_path(pe):
        return "flex"
    return "blocks"


def flex_training_note(config, pe, compiled=False):
    """Why (eager or compiled) training on CUDA takes SDPA blocks although config.attn_backend
    allows FlexAttention for pe (None if it takes flex): route() decides, this says why."""
    if config.attn_backend == "sdpa" or not has_flex_path(pe):
        return None
    # index time (1-D positions): a learned clock never takes flex (see route)
    args = pe, torch.zeros(1), config.attn_backend, "cuda", True, config.attn_dropout
    if route(*args, compiled=compiled) == "flex":
        return None
    if not FLEX_BACKWARD:
        return (
            f"torch {torch.__version__} cannot take gradients through a FlexAttention score_mod's"
            " tables (needs torch >= 2.6): on CUDA, training attention runs on SDPA"
        )
    if compiled and not pe.compiled_flex_grad:
        return (
            "compiled FlexAttention cannot take gradients through tables this encoding computes"
            " inside the graph: compiled training attention runs on SDPA query blocks"
            " (evaluation uses FlexAttention)"
        )
    return (  # what else keeps eager training off flex: attention dropout
        f"FlexAttention has no attention dropout: with attn_dropout={config.attn_dropout},"
        " training attention runs on SDPA (evaluation uses FlexAttention on CUDA)"
    )


def _causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def _causal_block_mask(T, device):
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(_causal, None, None, T, T, device=device)


# eager: one block mask per length is kept; compiled: the traced graph makes it (cheaply)
_cached_causal_block_mask = functools.lru_cache(maxsize=8)(_causal_block_mask)


@functools.cache
def _compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


def flex_causal_attention(q, k, v, pos, pe, scale):
    """Causal attention with pe's bias as a FlexAttention score_mod; gradients reach what the
    score_mod captures (tables, slopes). Rotations are applied first, as on the other routes."""
    from torch.nn.attention.flex_attention import flex_attention

    mod = pe.score_mod(q, pos)
    if pe.has_rotate:
        q, k = pe.rotate(q, k, pos, pos)
    T = q.size(2)
    if torch.compiler.is_compiling():  # traced and fused with the rest of the model
        mask = _causal_block_mask(T, q.device)
        return flex_attention(q, k, v, score_mod=mod, block_mask=mask, scale=scale)
    mask = _cached_causal_block_mask(T, str(q.device))
    # an eager model on CUDA still gets flex compiled (the unfused one materialises T x T scores)
    flex = _compiled_flex_attention() if q.device.type == "cuda" else flex_attention
    return flex(q, k, v, score_mod=mod, block_mask=mask, scale=scale)


def causal_attention(
    q, k, v, pos, pe, dropout_p=0.0, query_block=512, explicit=False, backend="sdpa", kv=None
):
    """Causal attention of q, k, v (B, H, T, d) under encoding pe at positions pos: (T,), or a
    clock broadcastable to (B, H, T). Decoding: kv is a LayerKV with the earlier tokens' keys and
    values; pos then covers all of them, and the queries are the last T."""
    how = route(pe, pos, backend, q.device.type, torch.is_grad_enabled(), dropout_p, explicit,
                decoding=kv is not None)  # fmt: skip
    # 1/sqrt(d) of the head dim before rotate(): an encoding may append coordinates to q and k
    scale = 1.0 / math.sqrt(q.size(-1))
    if how == "flex":
        return flex_causal_attention(q, k, v, pos, pe, scale)
    Tq = q.size(2)
    if how == "fused":
        if pe.has_rotate:  # the same rotation of key s for every query: a cache keeps them rotated
            pos_new = pos if kv is None else pos[..., -Tq:]
            q, k = pe.rotate(q, k, pos_new, pos_new)
        if kv is None:
            return F.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale
            )
        k, v = kv.extend(k, v)  # is_causal aligns the first query with the first key: not here
        mask = causal_mask(k.size(2) - Tq, k.size(2), q.device) if Tq > 1 else None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    if kv is not None:  # raw keys: decays and biases depend on t - s, applied per query
        k, v = kv.extend(k, v)
    return _blockwise(q, k, v, pos, pe, dropout_p, query_block, how == "scores", scale)


def _blockwise(q, k, v, pos, pe, dropout_p, query_block, explicit, scale):
    """Queries in blocks; each block sees keys 0 .. its end, with times relative to its first query
    (exact by the group law A(t - s) = A(t - t0) A(t0 - s); keeps e^{alpha t} bounded).
    Non-orthogonal encodings run here in float32 with autocast off: their factors (e^{+-alpha t},
    t^k) span more orders of magnitude than half precision keeps."""
    Tq, T, out_dtype = q.size(2), k.size(2), v.dtype
    start = T - Tq  # the first query's index among the keys
    query_block = min(query_block, pe.max_query_block or query_block)
    if not torch.compiler.is_compiling():
        # at least two blocks: one block computes the whole masked square, two skip a quarter.
        # Not in a compiled graph: a block size that follows a dynamic length breaks inductor
        query_block = min(query_block, (Tq + 1) // 2)
    elif not torch.is_grad_enabled() and Tq > query_block:
        # compiled evaluation visits many lengths, and dynamo unrolls a loop over a symbolic number
        # of blocks with a guard on the count: one graph per count. Past one block the loop runs
        # outside the graph instead (a break per layer; wrapped here, not at import: importing
        # this module does not load dynamo); each block is still one SDPA call
        blockwise = torch.compiler.disable(_blockwise)
        return blockwise(q, k, v, pos, pe, dropout_p, query_block, explicit, scale)
    exact = not pe.orthogonal and not explicit
    if exact:
        ct = compute_dtype(q.dtype)
        q, k, v = q.to(ct), k.to(ct), v.to(ct)
    out = []
    for i in range((Tq + query_block - 1) // query_block):
        t0 = start + i * query_block
        t1 = min(T, t0 + query_block)
        pos_q, pos_k = pos[..., t0:t1], pos[..., :t1]
        q_b, k_b, v_b = q[:, :, t0 - start : t1 - start], k[:, :, :t1], v[:, :, :t1]
        mask = causal_mask(t0, t1, q.device)
        with no_autocast(q.device.type) if exact else nullcontext():
            y = _attend_block(q_b, k_b, v_b, pos_q, pos_k, mask, pe, explicit, scale, dropout_p)
        out.append(y.to(out_dtype))
    return torch.cat(out, dim=2)


def _attend_block(q, k, v, pos_q, pos_k, mask, pe, explicit, scale, dropout_p):
    """One query block: q (B, H, Tq, d) at pos_q over keys k, v at pos_k; mask (Tq, Tk) True where
    a query sees a key. Through pe.scores() (explicit) or SDPA with the bias as a float mask."""
    ct = compute_dtype(q.dtype)
    if explicit:
        att = pe.scores(q, k, pos_q, pos_k).to(ct).masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        if dropout_p > 0:  # not training=dropout_p > 0: a symbolic bool breaks the graph
            att = F.dropout(att, p=dropout_p)
        return (att @ v.to(ct)).to(v.dtype)
    bias = pe.bias(q, k, pos_q, pos_k) if pe.has_bias else None
    if pe.has_rotate:
        ref = pos_q[..., :1]
        q, k = pe.rotate(q, k, pos_q - ref, pos_k - ref)
    if bias is not None:
        mask = bias.to(ct).masked_fill(~mask, float("-inf")).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
