"""
nanoPE's GPT, in one file: a GPT-2 style decoder whose attention takes a pluggable positional
encoding from encodings/. Read top to bottom:

1. the shared positional math (rotations, distances) that several encodings use,
2. the Encoding interface every file in encodings/ implements, and the loader that finds them,
3. causal attention: one fused kernel where the encoding allows it, query blocks otherwise
   (FlexAttention for the biases that have a score_mod lives in flex.py),
4. the GPT itself (pre-LN blocks, GELU MLP, tied embeddings, GPT-2 init), after karpathy/nanoGPT.

An encoding touches attention through three hooks, each "do nothing" by default:
    embed(pos)                  -> (T, n_embd) added to the token embeddings     (absolute)
    rotate(q, k, pos_q, pos_k)  -> q', k' whose dot products carry position       (RoPE family)
    bias(q, k, pos_q, pos_k)    -> additive logits, broadcastable to (B,H,Tq,Tk)  (ALiBi, T5, Shaw)
and one reference method, scores(q, k, pos_q, pos_k) -> (B,H,Tq,Tk) pre-softmax logits computed the
slow, obvious way (1/sqrt(d) included, causal mask excluded). Tests check that the fast path agrees
with scores(), and that scores() agrees with each paper's formula.

Positions are a tensor `pos` (T,) (default arange(T)), or a clock per sequence and head
broadcastable to (B, H, T) (randomized positions, learned time: LearnedClock); they may be offset
or float times.
"""

import difflib
import functools
import importlib
import importlib.machinery
import importlib.util
import inspect
import math
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

import flex

# Denormals: a softmax over strongly decayed logits (FoX, ALiBi far out) makes probabilities below
# 2^-126, and an x86 CPU runs every matmul that touches them ~100x slower (a (32, 128, 256) @
# (256, 64) bmm: 154 ms against 1.6 ms, measured). Flushing them to zero changes values below
# 1.2e-38 only. Process-wide, so set where every script gets it: on importing the model.
torch.set_flush_denormal(True)

# -----------------------------------------------------------------------------
# Shared positional math. Encodings import these from here so that each formula exists once.


def hp_dtype(device):
    """The most precise float dtype on `device`: angles and decays are computed in it, then cast."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def compute_dtype(dtype):
    """Positional math runs in float32 at least: bf16/fp16 inputs are upcast, float64 is kept."""
    return torch.promote_types(dtype, torch.float32)


def relative_distance(pos_q, pos_k):
    """t - s, how far key s lies in the past of query t: (Tq, Tk) for positions (T,), and
    (B|1, H|1, Tq, Tk) for clocks per sequence and head, (B|1, H|1, T)."""
    return pos_q[..., :, None] - pos_k[..., None, :]


def consecutive(pos_q, pos_k):
    """Whether the keys sit one apart (1-D positions, any start) and the queries are the last of
    them: key offsets are then distances. Checked on the CPU only, outside a compiled graph
    (elsewhere the check would wait for the device, or break the graph); False otherwise."""
    if pos_k.dim() != 1 or pos_q.dim() != 1 or pos_k.device.type != "cpu":
        return False
    if torch.compiler.is_compiling():
        return False
    Tq, Tk = pos_q.size(0), pos_k.size(0)
    steps = torch.arange(Tk, dtype=pos_k.dtype)
    return torch.equal(pos_k - pos_k[0], steps) and torch.equal(pos_q, pos_k[Tk - Tq :])


def toeplitz(f, pos_q, pos_k):
    """f(t - s) for every query t and key s: (..., Tq, Tk) for an elementwise f of the distances.
    At consecutive positions (see consecutive) f runs once per distance, Tq + Tk - 1 of them,
    and query i's row is a window of the result: the same values, without f's work per pair."""
    if not consecutive(pos_q, pos_k):
        return f(relative_distance(pos_q, pos_k))
    Tq, Tk = pos_q.size(-1), pos_k.size(-1)
    steps = torch.arange(Tq + Tk - 1, dtype=pos_k.dtype)
    per_distance = f((pos_q[-1] - pos_k[0]) - steps)  # Tk - 1 .. -(Tq - 1): (..., Tq + Tk - 1)
    # window r holds distances Tk - 1 - r .. -r, the row of query Tq - 1 - r
    return per_distance.unfold(-1, Tk, 1).flip(-2)


def rope_frequencies(dim, base=10000.0, device=None):
    """RoPE's theta_i = base^(-2i/dim) for i = 0 .. dim/2 - 1, in float64 (float32 on mps)."""
    i = torch.arange(0, dim, 2, device=device, dtype=hp_dtype(device or "cpu"))
    return base ** (-i / dim)


def rotate_pairs(x, cos, sin):
    """Rotate the interleaved channel pairs (x[2i], x[2i+1]) of x (..., T, d) by the angles whose
    cos/sin are (..., T, d/2): (a, b) -> (a cos - b sin, a sin + b cos). Math in float32 at least,
    result in x's dtype (float64 stays float64, for tests)."""
    ct = compute_dtype(x.dtype)
    cos, sin = cos.to(ct), sin.to(ct)
    if torch.compiler.is_compiling() or x.device.type == "mps":
        # inductor fuses this into one kernel (it cannot generate code for complex numbers);
        # mps: complex support is incomplete
        a, b = x[..., 0::2].to(ct), x[..., 1::2].to(ct)
        out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
        return out.flatten(-2).to(x.dtype)
    # eager: the same arithmetic as the complex product (a + ib)(cos + i sin), one kernel forward
    # and one backward instead of seven on strided halves (RoPE's cost in a CPU training step
    # halves). A complex view needs even strides and offset: q and k as attention gets them (head
    # views of the qkv projection) have them, and copying them costs 15% of the rotation
    # (measured); a slice of channels may not (p-RoPE), and is copied
    pairs = x.to(ct).unflatten(-1, (-1, 2))
    if pairs.storage_offset() % 2 or any(st % 2 for st in pairs.stride()[:-1]):
        pairs = pairs.contiguous()
    x_c = torch.view_as_complex(pairs)
    out = x_c * torch.complex(cos, sin)
    return torch.view_as_real(out).flatten(-2).to(x.dtype)


def pair_products(q, k):
    """Per rotation pair i, the two bilinear forms that make up q_i^T R(phi) k_i:
    dot = a_q a_k + b_q b_k and cross = a_q b_k - b_q a_k, each (B, H, Tq, Tk, d/2), so that
    q_i^T R(phi)^T k_i = cos(phi) dot + sin(phi) cross. Used by the explicit scores() of the
    rotation encodings; memory is Tq*Tk*d/2, fine for tests and plots, never used in training."""
    qa, qb = q[..., 0::2].unsqueeze(3), q[..., 1::2].unsqueeze(3)  # (B,H,Tq,1,d/2)
    ka, kb = k[..., 0::2].unsqueeze(2), k[..., 1::2].unsqueeze(2)  # (B,H,1,Tk,d/2)
    return qa * ka + qb * kb, qa * kb - qb * ka


def bounded_decay(raw, max_alpha):
    """A learnable decay rate alpha in (-max_alpha, 0): -max_alpha * sigmoid(raw). Smooth, so the
    gradient never vanishes at the bound (a clamp's would); near 0 it moves like alpha itself."""
    return -max_alpha * torch.sigmoid(raw)


def bounded_decay_raw(alpha, max_alpha):
    """The raw parameter that bounded_decay maps to alpha (a float64 tensor, values <= 0)."""
    x = -alpha / max_alpha
    if (x >= 1).any():
        raise ValueError(
            f"a learnable decay must be smaller than max_alpha={max_alpha} in size, got"
            f" {alpha.min().item():.4g}: raise max_alpha or start from a smaller decay"
        )
    return torch.logit(x.clamp(min=1e-6))  # alpha = 0 (gamma = 1) starts just below 0


# -----------------------------------------------------------------------------
# The encoding interface, and the loader for encodings/.


class Encoding(nn.Module):
    """Base class of every positional encoding. Subclasses override the hooks they need.

    Class attributes an encoding may set:
      per_layer  -- True: every layer gets its own instance (own parameters, e.g. Shaw);
                    False: one instance shared by all layers (e.g. T5's single bias table).
      orthogonal -- True when rotate() preserves dot-product scale (RoPE): attention then runs in
                    one fused causal kernel. False (decays, Jordan blocks): attention works in query
                    blocks in float32, with block-relative times so that e^{alpha t} never
                    overflows, and without autocast (half precision would round decays away).
      explicit   -- True for encodings that are none of embed/rotate/bias (e.g. multiplicative):
                    attention then always goes through scores().
      max_len    -- absolute tables: positions must lie in [0, max_len). None = any position.
      max_query_block -- the largest query block that keeps the encoding's factors finite.
      shift_invariant -- False for an encoding that is neither absolute (has_embed) nor a function
                    of t - s alone (e.g. FIRE); the shift-invariance tests then skip it.
    """

    per_layer = False
    orthogonal = True
    explicit = False
    max_len = None
    max_query_block = None  # an upper bound on the query block size, for decaying encodings
    # names of the parameters AdamW decays. Positional parameters are not decayed unless an
    # encoding opts in (the learned absolute table does, as GPT-2's wpe): decay would pull
    # slopes, frequencies and bias tables toward "no position" and tilt comparisons
    decayed_parameters = ()
    context_len = None  # length of the sequence in the current forward (set by GPT.forward)
    # True when the encoding's math changes with context_len (dynamic NTK): every hidden state
    # then changes with each new token, so generate() cannot keep a KV cache
    context_dependent = False
    scalings = ()  # RoPE context-extension methods it takes as encoding_kwargs["scaling"]
    # "learned": the encoding always runs on a learned clock (FoX), whatever GPTConfig.time says;
    # clock_init then gives that clock's initialisation (LearnedClock's keyword arguments)
    time = None
    clock_init = {}
    # True when the encoding rounds t - s to integer buckets (T5, Shaw, Huang): piecewise constant
    # in time, it would pass a learned clock no gradient, so it refuses one
    rounds_distances = False

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.head_dim = config.n_embd // config.n_head
        # which hooks attention calls: those a subclass overrides (it may switch one off after
        # construction, e.g. a generator with no bias blocks)
        self.has_embed = type(self).embed is not Encoding.embed
        self.has_rotate = type(self).rotate is not Encoding.rotate
        self.has_bias = type(self).bias is not Encoding.bias

    # hooks; the defaults do nothing, and has_* tells attention which ones a subclass overrides
    def embed(self, pos):
        return None

    def rotate(self, q, k, pos_q, pos_k):
        return q, k

    def bias(self, q, k, pos_q, pos_k):
        return None

    def score_mod(self, q, pos):
        """Optional, for FlexAttention (GPTConfig.attn_backend, "auto" on CUDA): a function
        mod(score, b, h, q_idx, kv_idx) -> score + the bias of query q_idx and key kv_idx at
        positions pos, i.e. bias() written element-wise. None: this encoding uses SDPA."""
        return None

    def bias_band(self, q, pos_q, pos_k):
        """Optional, for CPU training: None, or a band (B|1, H|1, Tq, W) that stands in for
        bias() when every key but the W nearest each query gets the same bias, a per-query
        constant that softmax ignores: band[..., i, c] is the bias of query i at key
        Tk - Tq + i - (W - 1) + c minus that constant (the queries are the last Tq keys)."""
        return None

    @property
    def takes_clock(self):
        """Whether a learned clock (GPTConfig.time = "learned") can drive this encoding: it must
        read relative positions. Absolute encodings add theirs to the tokens, before any layer;
        an encoding without hooks (NoPE) reads none. One that ignores its positions sets False."""
        return not self.has_embed and (self.has_rotate or self.has_bias or self.explicit)

    @property
    def shift_invariant(self):
        """Outputs unchanged under pos + c (tests check it): true of every encoding that is not
        absolute. A subclass that is neither may set the class attribute to False."""
        return not self.has_embed

    def scores(self, q, k, pos_q, pos_k):
        """Pre-softmax logits (B,H,Tq,Tk), causal mask excluded. This default composes the hooks;
        rotation encodings override it with their explicit relative formula."""
        if self.has_rotate:
            # rotate() is relative, so shifting both times by the first query time changes nothing
            # mathematically and keeps non-orthogonal factors (decays) bounded
            ref = pos_q[..., :1]
            q_r, k_r = self.rotate(q, k, pos_q - ref, pos_k - ref)
        else:
            q_r, k_r = q, k
        ct = compute_dtype(q.dtype)
        s = (q_r.to(ct) @ k_r.to(ct).transpose(-2, -1)) / math.sqrt(q.size(-1))
        b = self.bias(q, k, pos_q, pos_k) if self.has_bias else None
        return s if b is None else s + b


ENCODINGS_DIR = Path(__file__).resolve().parent / "encodings"
# `encodings` is also the name of a standard-library package (codecs) that Python imports at
# start-up, so `import encodings.rope` would find the wrong package. We load our folder under
# another package name instead; relative imports between encoding files still work.
_PACKAGE = "nanope_encodings"


def _encodings_package():
    if _PACKAGE not in sys.modules:
        # encoding files do `from model import Encoding, ...`: make sure that is this module
        sys.modules.setdefault("model", sys.modules[__name__])
        spec = importlib.machinery.ModuleSpec(_PACKAGE, None, is_package=True)
        package = importlib.util.module_from_spec(spec)
        package.__path__ = [str(ENCODINGS_DIR)]
        sys.modules[_PACKAGE] = package
    return sys.modules[_PACKAGE]


def available_encodings():
    """Names of the encodings in encodings/ (one file each; files starting with _ are skipped)."""
    return sorted(p.stem for p in ENCODINGS_DIR.glob("*.py") if not p.stem.startswith("_"))


def _nearest(name, options):
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def encoding_class(name):
    """The Encoding subclass defined in encodings/<name>.py."""
    names = available_encodings()
    if name not in names:
        raise ValueError(
            f"unknown encoding {name!r}{_nearest(name, names)}; available: {', '.join(names)}"
        )
    _encodings_package()
    module = importlib.import_module(f"{_PACKAGE}.{name}")
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Encoding) and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise ValueError(f"encodings/{name}.py must define exactly one Encoding subclass")
    return found[0]


def encoding_options(name):
    """The keyword options (encoding_kwargs) an encoding accepts, with their defaults."""
    params = list(inspect.signature(encoding_class(name).__init__).parameters.values())[2:]
    return {p.name: p.default for p in params}


def build_encoding(config):
    """A fresh encoding module for config.encoding, configured by config.encoding_kwargs."""
    cls = encoding_class(config.encoding)
    kwargs = dict(config.encoding_kwargs or {})
    options = encoding_options(config.encoding)
    for key in kwargs:
        if key not in options:
            valid = ", ".join(options) or "none"
            raise ValueError(
                f"encoding {config.encoding!r} has no option {key!r}{_nearest(key, list(options))};"
                f" its options: {valid}"
            )
    return cls(config, **kwargs)


# -----------------------------------------------------------------------------
# Causal attention with an encoding.


def causal_mask(t0, t1, device):
    """Boolean (t1 - t0, t1) mask, True where query t0 + i may see key j (j <= t0 + i)."""
    return torch.ones(t1 - t0, t1, dtype=torch.bool, device=device).tril(diagonal=t0)


@functools.cache
def _note_once(message):
    print(f"note: {message}")


def causal_attention(
    q, k, v, pos, pe, dropout_p=0.0, query_block=512, explicit=False, backend="sdpa", kv=None
):
    """Causal attention of q, k, v (B, H, T, d) under encoding pe, at positions pos: (T,), or a
    clock per sequence and head broadcastable to (B, H, T) (randomized or learned time).
    Decoding: kv is a LayerKV holding the keys and values of the tokens before these; pos then
    covers all of them, and the queries are the last T positions.

    Three paths, chosen by what the encoding is:
    - orthogonal rotation or nothing (RoPE, NoPE, absolute encodings): rotate once, then one call
      of the fused causal kernel (flash attention: memory linear in T);
    - bias or non-orthogonal rotation: queries in blocks of `query_block`; each block sees keys
      0 .. end of block, gets the causal mask folded into its float bias (SDPA refuses an
      attn_mask together with is_causal), and rotates with times relative to the block's first
      query (exact by the group law A(t - s) = A(t - t0) A(t0 - s); keeps e^{alpha t} bounded).
      Memory is O(query_block * T). Non-orthogonal encodings (decays, Jordan polynomials) run
      this path in float32 even under bf16/fp16 autocast: their factors span many orders of
      magnitude (e^{+-alpha t}, t^k) that half precision would overflow (fp16) or round away
      (bf16). What would cancel (polynomials in t - s) is computed in t - s, as a bias, never as
      a difference of large matmul terms: under TF32 those would lose all their digits;
    - explicit (the encoding asks for it, or a test does): the same blocks through pe.scores().
    FlexAttention (backend "auto" on CUDA, or "flex"; see flex.use_flex) replaces the blocks for an
    orthogonal encoding whose score_mod() gives its bias element-wise (ALiBi, T5, Shaw, damped
    RoPE with decay="weight"): in training too, unless attention dropout is on (FlexAttention
    has none). Decoding steps (kv) keep SDPA: one query row needs no block mask.
    """
    special = explicit or pe.explicit
    fused = not special and pe.orthogonal and not pe.has_bias
    Tq, out_dtype = q.size(2), v.dtype
    if fused and pe.has_rotate:  # an orthogonal rotation of key s is the same for every query:
        pos_new = pos if kv is None else pos[..., -Tq:]  # a cache keeps keys rotated
        q, k = pe.rotate(q, k, pos_new, pos_new)
    if kv is not None:  # the others cache raw keys: decays and biases depend on t - s
        k, v = kv.extend(k, v)
    T = k.size(2)
    start = T - Tq  # index of the first query among the keys
    # 1/sqrt(d) of the head dim, fixed before rotate(): an encoding may append coordinates to q, k
    scale = 1.0 / math.sqrt(q.size(-1))
    may_flex = pe.has_bias and pe.orthogonal and not special and kv is None and dropout_p == 0
    grad = torch.is_grad_enabled()
    if may_flex and pos.dim() == 1 and flex.use_flex(backend, q.device.type, grad):
        mod = pe.score_mod(q, pos)
        if mod is not None:
            return flex.flex_causal_attention(q, k, v, pos, pe, mod, scale)
    if fused and kv is None:
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale
        )
    if fused:  # is_causal aligns the first query with the first key: decoding needs the last
        mask = causal_mask(start, T, q.device) if Tq > 1 else None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)

    query_block = min(query_block, pe.max_query_block or query_block)
    if not torch.compiler.is_compiling():
        # at least two blocks: a block computes all of its scores, masked or not, so one block
        # would do the whole (T, T) square; two skip a quarter of it (measured at T = 256 on CPU:
        # T5's and Shaw's training steps 8-15% faster). Not in a compiled graph: a block size
        # that follows a dynamic length breaks inductor's shape reasoning (torch 2.13)
        query_block = min(query_block, (Tq + 1) // 2)
    exact = not pe.orthogonal and not special
    if exact:
        ct = compute_dtype(q.dtype)
        q, k, v = q.to(ct), k.to(ct), v.to(ct)
    path = "scores" if special else "sdpa"
    if not special and q.device.type == "cpu" and torch.is_grad_enabled() and pe.has_bias:
        learns = pos.requires_grad or any(p.requires_grad for p in pe.parameters())
        path = "written" if learns else path
    if path == "written":  # the blocks' matmuls then view q, k, v as (B*H)-batches, no copies
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # (T5, Shaw: 1-2% of a step)
    out = []
    # a loop over the number of blocks, not range(start, T, block): under torch.compile with
    # dynamic shapes the latter fixes T, and every evaluation length would compile anew
    for i in range((Tq + query_block - 1) // query_block):
        t0 = start + i * query_block
        t1 = min(T, t0 + query_block)
        pos_q, pos_k = pos[..., t0:t1], pos[..., :t1]
        q_b, k_b, v_b = q[:, :, t0 - start : t1 - start], k[:, :, :t1], v[:, :, :t1]
        mask = causal_mask(t0, t1, q.device)
        with no_autocast(q.device.type) if exact else nullcontext():
            y = _attend_block(q_b, k_b, v_b, pos_q, pos_k, mask, pe, path, scale, dropout_p)
        out.append(y.to(out_dtype))
    return torch.cat(out, dim=2)


def _attend_block(q, k, v, pos_q, pos_k, mask, pe, path, scale, dropout_p):
    """Attention of one query block: q (B, H, Tq, d) at positions pos_q over keys k, v at pos_k;
    mask (Tq, Tk) says which keys each query may see. path: "scores" (pe.scores, explicit),
    "sdpa", or "written": softmax(q k^T * scale + bias) v written out here. On CPU a bias that
    learns (a table, vectors, a learned clock) would send SDPA down its math path, which also
    checks every row for being all -inf and copies strided inputs; the same math written out
    (adding in place: autograd keeps the inputs of a product, not its output) is faster.
    bench.py: T5's training step 1.14 -> 1.10x NoPE's, Shaw's 1.25 -> 1.21x (both 1.07-1.08x
    with Shaw's band, Encoding.bias_band, contiguous blocks and checkpoint.keep_freed_memory)."""
    ct = compute_dtype(q.dtype)
    if path == "scores":
        att = pe.scores(q, k, pos_q, pos_k).to(ct).masked_fill(~mask, float("-inf"))
    else:
        written = path == "written"
        band = pe.bias_band(q, pos_q, pos_k) if written else None
        bias = pe.bias(q, k, pos_q, pos_k) if pe.has_bias and band is None else None
        if pe.has_rotate:
            ref = pos_q[..., :1]
            q, k = pe.rotate(q, k, pos_q - ref, pos_k - ref)
        if not written or (bias is None and band is None):  # (bias() may return None)
            if bias is not None:  # SDPA refuses an attn_mask together with is_causal
                mask = bias.to(ct).masked_fill(~mask, float("-inf")).to(q.dtype)
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale
            )
        att = ((q * scale) @ k.mT).to(ct)
        if band is not None:
            att, bias = AddBand.apply(att, band.to(ct)), att.new_zeros(mask.shape)
        # the causal mask as an additive -inf: masked_fill_ on the logits takes 4x as long
        att.add_(bias.to(ct).masked_fill(~mask, float("-inf")))
    att = F.softmax(att, dim=-1)
    if dropout_p > 0:  # not training=dropout_p > 0: a symbolic bool breaks the graph
        att = F.dropout(att, p=dropout_p)
    return (att @ v.to(ct)).to(v.dtype)


class AddBand(torch.autograd.Function):
    """att (..., Tq, Tk) plus a band (..., Tq, W) along its diagonal, in place: band[..., i, c]
    goes to key Tk - Tq + i - (W - 1) + c of query i (Encoding.bias_band). Key j of query i lies
    at i * Tk + j in att's last two dims, so row i's band starts Tk + 1 elements after row i - 1's:
    one strided view. Band entries before key 0 land on future keys of the row above, which the
    causal mask then overwrites; the first row's are cut off. Backward reads the band back out
    of the gradient: no (Tq, Tk) bias is built, gathered or scattered."""

    @staticmethod
    def forward(ctx, att, band):
        ctx.mark_dirty(att)
        ctx.band_shape = band.shape
        for view, part in _band_views(att, band):
            view.add_(part)
        return att

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        band = grad.new_zeros(grad.shape[:-1] + ctx.band_shape[-1:])
        for view, part in _band_views(grad, band):
            part.copy_(view)
        return grad, band.sum_to_size(ctx.band_shape)


def _band_views(att, band):
    """Pairs (a strided view of att, the part of band that goes there)."""
    Tq, Tk = att.shape[-2:]
    W = band.size(-1)
    assert att.stride()[-2:] == (Tk, 1) and W <= Tk, "a band needs rows of att contiguous"
    start = Tk - Tq - (W - 1)  # the key of band[..., 0, 0]
    size, stride = att.shape[:-1] + (W,), att.stride()[:-2] + (Tk + 1, 1)
    offset = att.storage_offset()
    if start >= 0:
        return [(att.as_strided(size, stride, offset + start), band)]
    rows = att.as_strided(size[:-2] + (Tq - 1, W), stride, offset + Tk + 1 + start)
    return [(att[..., :1, : W + start], band[..., :1, -start:]), (rows, band[..., 1:, :])]


def no_autocast(device_type):
    """Autocast off for one kernel call (on devices where autocast exists)."""
    if device_type in ("cuda", "cpu"):
        return torch.autocast(device_type=device_type, enabled=False)
    return nullcontext()


# -----------------------------------------------------------------------------
# The GPT, after nanoGPT.


class KVCache:
    """What generate() keeps of the tokens decoded so far: their positions and, per layer, their
    keys and values. Orthogonal rotations (RoPE) store keys rotated, as their rotation does not
    depend on the query; every other encoding stores them as the projection made them and applies
    its decay, polynomial or bias relative to the current query, exactly as a full forward does,
    at O(context) per new token. A context-dependent encoding (dynamic NTK) changes every hidden
    state with each token: generate() does not reuse a cache for it."""

    def __init__(self, n_layer):
        self.layers = [LayerKV() for _ in range(n_layer)]
        self.pos = None
        self.clock = None  # a shared learned clock's times so far

    @property
    def length(self):
        return 0 if self.pos is None else self.pos.numel()

    def extend_positions(self, pos):
        self.pos = pos if self.pos is None else torch.cat((self.pos, pos))
        return self.pos


class LayerKV:
    k = v = None
    clock = None  # this layer's learned clock's times so far

    def extend(self, k, v):
        """The cached keys and values followed by k, v (B, H, T, d); kept for the next step."""
        if self.k is not None:
            k, v = torch.cat((self.k, k), dim=2), torch.cat((self.v, v), dim=2)
        self.k, self.v = k, v
        return k, v


@dataclass
class GPTConfig:
    block_size: int = 1024  # training length; only the learned table is tied to it
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linears and LayerNorms, like GPT-2
    encoding: str = "rope"  # a file name in encodings/
    encoding_kwargs: dict = field(default_factory=dict)  # that encoding's options
    attn_block_size: int = 512  # query block for bias / decaying encodings (memory O(block * T))
    attn_backend: str = "auto"  # auto (FlexAttention for bias encodings on CUDA) | sdpa | flex
    time: str = "index"  # "index": positions are token indices; "learned": LearnedClock per layer
    time_shared: bool = False  # learned time: one clock for every layer, from the embeddings
    max_train_position: int = 0  # randomized training positions: their bound (0: block_size)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False before 2.1)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


TIMES = ("index", "learned")


class LearnedClock(nn.Module):
    """Time learned from the data, per head (Mamba's Delta): each token advances head h's clock at
    a rate r_{u,h} = softplus(w_h . x_u + b_h) >= 0 over its position's step, so that

        t_{u,h} = p_0 + sum_{0 < u' <= u} delta_{u',h},   delta_u = r_u (p_u - p_{u-1}),

    so t - s = sum_{u=s+1..t} delta_u: on token indices delta = r, on other positions (randomized
    ones, timestamps) their steps rescaled. Any relative encoding then runs on t. Default init
    w = 0, b = softplus^-1(1): r = 1 exactly (in float32), so a fresh model is the model on p, bit
    for bit. Sums run in float64 (float32 on mps): positions far out keep their small steps."""

    def __init__(self, n_embd, n_head, delta=1.0, weight_std=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_head, n_embd) * weight_std)
        self.bias = nn.Parameter(torch.full((n_head,), math.log(math.expm1(delta))))

    def forward(self, x, pos, past=None):
        """Clock (B, H, T) of the tokens x (B, T, C), whose positions are the last T of pos
        (..., T0 + T); past: the clock (B, H, T0) of the tokens before them (decoding)."""
        with no_autocast(x.device.type):  # a bf16 rate would round every step
            # (H, C) @ (B, C, T): (B, H, T) directly; a transposed linear output made aot_eager's
            # backward view a strided gradient (torch 2.13)
            z = self.weight @ x.float().transpose(1, 2) + self.bias[:, None]
        rate = F.softplus(z).to(hp_dtype(x.device))
        T, p = x.size(1), pos.to(rate.dtype)
        if past is None:  # the first token keeps its position
            p = p[..., -T:]
            return p[..., :1] + (rate * torch.diff(p, dim=-1, prepend=p[..., :1])).cumsum(-1)
        return past[..., -1:] + (rate * torch.diff(p[..., -T - 1 :], dim=-1)).cumsum(-1)


def make_clock(config, pe):
    """The learned clock config.time and the encoding ask for, or None (token index)."""
    if config.time not in TIMES:
        raise ValueError(f"time must be one of {', '.join(TIMES)}, got {config.time!r}")
    if pe.time != "learned" and config.time != "learned":
        return None
    if not pe.takes_clock:
        raise ValueError(
            f"time='learned' needs an encoding that reads relative positions; {config.encoding!r}"
            " does not (absolute, content-only or none): use time='index'"
        )
    if pe.rounds_distances:
        raise ValueError(
            f"time='learned': {config.encoding!r} rounds t - s to integer buckets, so no gradient"
            " would reach the clock; use time='index' or an encoding that reads real distances"
        )
    return LearnedClock(config.n_embd, config.n_head, **pe.clock_init)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.query_block = config.attn_block_size
        if config.attn_backend not in flex.ATTN_BACKENDS:
            choices = ", ".join(flex.ATTN_BACKENDS)
            raise ValueError(f"attn_backend must be one of {choices}, got {config.attn_backend!r}")
        self.backend = config.attn_backend
        self.clock = None  # a LearnedClock of this layer's own (GPT sets it)

    def forward(self, x, pos, pe, explicit=False, kv=None):
        B, T, C = x.size()
        if self.clock is not None:
            pos = clock_positions(self.clock, x, pos, kv)
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, d)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        dropout_p = self.dropout if self.training else 0.0
        y = causal_attention(
            q, k, v, pos, pe, dropout_p, self.query_block, explicit, self.backend, kv
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, pos, pe, explicit=False, kv=None):
        x = x + self.attn(self.ln_1(x), pos, pe, explicit, kv)
        return x + self.mlp(self.ln_2(x))


def clock_positions(clock, x, pos, state):
    """The clock of every token attention sees: with a cache (state: a LayerKV or KVCache holding
    the clock so far), the cached tokens' times followed by the new tokens'."""
    past = None if state is None else state.clock
    new = clock(x, pos, past)
    if state is None:
        return new
    state.clock = new if past is None else torch.cat((past, new), dim=-1)
    return state.clock


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None and config.block_size is not None
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as in GPT-2
        # GPT-2 init for the transformer; encodings initialise their own parameters
        self.transformer.apply(self._init_weights)
        for name, p in self.transformer.named_parameters():
            if name.endswith("c_proj.weight"):  # scaled residual projections (GPT-2 paper)
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        # the positional encoding: one per layer, or one shared by every layer
        per_layer = encoding_class(config.encoding).per_layer
        n_pe = config.n_layer if per_layer else 1
        self.pe = nn.ModuleList([build_encoding(config) for _ in range(n_pe)])
        # learned time: a clock per layer (each from its own input), or one from the embeddings
        self.clock = make_clock(config, self.pe[0]) if config.time_shared else None
        if not config.time_shared:
            for block in self.transformer.h:
                block.attn.clock = make_clock(config, self.pe[0])
        note = flex.flex_training_note(config, self.pe[0]) if torch.cuda.is_available() else None
        if note:  # on CUDA the backend asks for FlexAttention, but training cannot have it
            _note_once(note)
        # "explicit" routes attention through pe.scores(): slow, for tests and inspection
        self.attn_impl = "fast"

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def max_len(self):
        """Longest sequence the encoding handles (learned absolute tables); None = any length."""
        return self.pe[0].max_len

    def layer_encoding(self, i):
        return self.pe[i] if len(self.pe) > 1 else self.pe[0]

    def get_num_params(self, non_embedding=True):
        """Parameter count. non_embedding drops absolute position tables, as nanoGPT drops wpe;
        the token embedding stays (it is tied to the output head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.pe[0].has_embed:
            n -= sum(p.numel() for p in self.pe[0].parameters())
        return n

    def forward(self, idx, targets=None, pos=None, cache=None):
        """Logits (B, T, vocab) of idx (B, T) at positions pos (default 0 .. T-1), and the mean
        cross-entropy against targets if given. With a KVCache (decoding, see generate()), idx
        holds only the new tokens: they attend to the cached ones and join them, positions
        continue the cached ones, and only the last position's logits are computed."""
        B, T = idx.size()
        past = cache.length if cache is not None else 0
        if pos is None:
            pos = torch.arange(past, past + T, device=idx.device)
        elif pos.shape not in ((T,), (B, T)) or (cache is not None and pos.dim() > 1):
            raise ValueError(
                f"pos must be (T,) or, without a cache, (B, T) = {(B, T)}: got {tuple(pos.shape)}"
            )
        for pe in self.pe:  # context extension (dynamic NTK) depends on the sequence length
            pe.context_len = past + T
        x = self.transformer.wte(idx)
        if self.pe[0].has_embed:
            x = x + self.pe[0].embed(pos).to(x.dtype)
        x = self.transformer.drop(x)
        explicit = self.attn_impl == "explicit"
        pos_all = pos if cache is None else cache.extend_positions(pos)
        if pos_all.dim() == 2:  # per sequence: (B, 1, T), broadcast over the heads
            pos_all = pos_all[:, None]
        if self.clock is not None:
            pos_all = clock_positions(self.clock, x, pos_all, cache)
        for i, block in enumerate(self.transformer.h):
            kv = cache.layers[i] if cache is not None else None
            x = block(x, pos_all, self.layer_encoding(i), explicit, kv)
        x = self.transformer.ln_f(x)
        if cache is not None:  # decoding needs the next token's distribution only
            x = x[:, -1:]
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1
            )
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        # decay the model's matrices (Linear weights, the token embedding), not biases or norms;
        # of the encoding's parameters only those it lists in decayed_parameters (see Encoding)
        pe_params = {id(p) for p in self.pe.parameters()}
        chosen = {id(p) for pe in self.pe for n, p in pe.named_parameters()
                  if n in pe.decayed_parameters}  # fmt: skip
        params = [p for p in self.parameters() if p.requires_grad]
        is_decayed = lambda p: id(p) in chosen or (p.dim() >= 2 and id(p) not in pe_params)
        decay = [p for p in params if is_decayed(p)]
        no_decay = [p for p in params if not is_decayed(p)]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
        extra = {"fused": True} if fused else {}
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **extra)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Sample max_new_tokens continuations of idx (B, T). temperature=0 decodes greedily.
        The prompt runs once; then each new token is one position's forward over a KVCache, so
        it costs O(context), and gives what a full forward of the whole context would. The
        context keeps growing past block_size for encodings that allow it; learned absolute
        tables crop it to their size, and once cropping starts every step re-encodes the window
        (its positions shift). So does a context-dependent encoding (dynamic NTK), every step:
        a cache made under the previous length's base would not be what a full forward gives."""
        cache = None
        stale = any(pe.context_dependent for pe in self.pe)
        for _ in range(max_new_tokens):
            cropped = self.max_len is not None and idx.size(1) > self.max_len
            if cache is None or cropped or stale:
                cache = KVCache(self.config.n_layer)
                window = idx if self.max_len is None else idx[:, -self.max_len :]
                logits, _ = self(window, cache=cache)
            else:
                logits, _ = self(idx[:, -1:], cache=cache)
            logits = logits[:, -1, :].float()
            if temperature == 0:
                idx_next = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("inf")
                idx_next = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx
