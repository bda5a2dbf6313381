"""
The Encoding interface that every file in encodings/ implements, the loader that finds them, and
the positional math several of them share (so that each formula exists once).

An encoding touches attention through three hooks, each "do nothing" by default:
    embed(pos)                  -> (T, n_embd) added to the token embeddings     (absolute)
    rotate(q, k, pos_q, pos_k)  -> q', k' whose dot products carry position       (RoPE family)
    bias(q, k, pos_q, pos_k)    -> additive logits, broadcastable to (B,H,Tq,Tk)  (ALiBi, T5, ...)
and one reference, scores(q, k, pos_q, pos_k) -> (B,H,Tq,Tk) pre-softmax logits computed the slow,
obvious way (1/sqrt(d) included, causal mask excluded). Tests check that attention agrees with
scores(), and scores() with each paper's formula. Positions are (T,) or a clock per sequence and
head broadcastable to (B, H, T); they may be offset or real-valued.
"""

import importlib
import importlib.machinery
import importlib.util
import inspect
import math
import sys
from pathlib import Path

import torch
import torch.nn as nn

from configurator import nearest_hint

# -----------------------------------------------------------------------------
# Shared positional math


def hp_dtype(device):
    """The most precise float dtype on `device`: angles and decays are computed in it, then cast."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def compute_dtype(dtype):
    """Positional math runs in float32 at least: bf16/fp16 inputs are upcast, float64 is kept."""
    return torch.promote_types(dtype, torch.float32)


def relative_distance(pos_q, pos_k):
    """t - s: (Tq, Tk) for positions (T,), (B|1, H|1, Tq, Tk) for clocks (B|1, H|1, T)."""
    return pos_q[..., :, None] - pos_k[..., None, :]


def rope_frequencies(dim, base=10000.0, device=None):
    """RoPE's theta_i = base^(-2i/dim) for i = 0 .. dim/2 - 1, in float64 (float32 on mps)."""
    i = torch.arange(0, dim, 2, device=device, dtype=hp_dtype(device or "cpu"))
    return base ** (-i / dim)


def rotate_pairs(x, cos, sin):
    """Rotate the interleaved pairs (x[2i], x[2i+1]) of x (..., T, d) by the angles whose cos/sin
    are (..., T, d/2): (a, b) -> (a cos - b sin, a sin + b cos). Math in float32 at least, result
    in x's dtype. Written with real tensors: inductor fuses it into one kernel."""
    ct = compute_dtype(x.dtype)
    cos, sin = cos.to(ct), sin.to(ct)
    a, b = x[..., 0::2].to(ct), x[..., 1::2].to(ct)
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2).to(x.dtype)


def rotation_scores(q, k, phi, weight=None):
    """sum_i w_i q_i^T R(phi_i)^T k_i = sum_i w_i (cos(phi_i) dot_i + sin(phi_i) cross_i) over the
    rotation pairs i, dot = a_q a_k + b_q b_k, cross = a_q b_k - b_q a_k; phi and the optional
    weight w are (..., Tq, Tk, d/2). (B, H, Tq, Tk) in float32 at least. For the explicit scores()
    of rotation encodings only (memory Tq*Tk*d/2)."""
    ct = compute_dtype(q.dtype)
    qa, qb = q[..., 0::2].to(ct).unsqueeze(3), q[..., 1::2].to(ct).unsqueeze(3)
    ka, kb = k[..., 0::2].to(ct).unsqueeze(2), k[..., 1::2].to(ct).unsqueeze(2)
    cos, sin = phi.cos(), phi.sin()
    if weight is not None:
        cos, sin = weight * cos, weight * sin
    return (cos.to(ct) * (qa * ka + qb * kb) + sin.to(ct) * (qa * kb - qb * ka)).sum(-1)


def decay_query_block(rate):
    """The largest query block over which a decay e^{rate * t} (rate the fastest, >= 0) stays far
    from float32's overflow at e^88; None without decay."""
    return max(1, int(60.0 / rate)) if rate > 0 else None


def bounded_decay(raw, max_alpha):
    """A learnable decay alpha = -max_alpha * sigmoid(raw) in (-max_alpha, 0): smooth, so the
    gradient never vanishes at the bound as a clamp's would."""
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
# The interface


class Encoding(nn.Module):
    """Base class of every positional encoding; subclasses override the hooks they need and set
    the class attributes below that differ from these defaults."""

    per_layer = False  # every layer gets its own instance (Shaw) rather than one shared (T5)
    # rotate() preserves dot-product scale (RoPE): one fused causal kernel. False (decays, Jordan
    # blocks): query blocks in float32, times relative to each block's first query
    orthogonal = True
    explicit = False  # none of embed/rotate/bias (multiplicative, DA): attention calls scores()
    max_len = None  # absolute tables: positions must lie in [0, max_len); None: any position
    max_query_block = None  # the largest query block that keeps a decay's factors finite
    # the parameters AdamW decays (the learned table, as GPT-2's wpe): decay pulls slopes and
    # tables to zero, so no other positional parameter is decayed
    decayed_parameters = ()
    context_len = None  # length of the sequence in the current forward (set by GPT.forward)
    context_dependent = False  # the math changes with context_len (dynamic NTK): no KV cache reuse
    scalings = ()  # RoPE context-extension methods taken as encoding_kwargs["scaling"]
    time = None  # "learned": always runs on a LearnedClock made with clock_init (FoX)
    clock_init = {}
    rounds_distances = False  # t - s rounded to buckets (T5, Shaw): a learned clock is refused
    # False when score_mod captures tensors computed in the graph (KERPLE's clamped r1, r2, FIRE's
    # MLP output, Shaw's q.a): compiled FlexAttention drops their gradient (torch 2.13,
    # tests/test_flex.py), so compiled training takes SDPA blocks
    compiled_flex_grad = True

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.head_dim = config.n_embd // config.n_head
        # the hooks a subclass overrides (it may switch one off after construction)
        self.has_embed = type(self).embed is not Encoding.embed
        self.has_rotate = type(self).rotate is not Encoding.rotate
        self.has_bias = type(self).bias is not Encoding.bias

    def embed(self, pos):
        return None

    def rotate(self, q, k, pos_q, pos_k):
        return q, k

    def bias(self, q, k, pos_q, pos_k):
        return None

    def score_mod(self, q, pos):
        """Optional, for FlexAttention: mod(score, b, h, q_idx, kv_idx) -> score + the bias of
        query q_idx and key kv_idx at positions pos (1-D), i.e. bias() element-wise. None: none."""
        return None

    @property
    def takes_clock(self):
        """Whether a learned clock can drive this encoding: it must read relative positions."""
        return not self.has_embed and (self.has_rotate or self.has_bias or self.explicit)

    @property
    def shift_invariant(self):
        """Outputs unchanged under pos + c; a relative encoding that is not (FIRE) sets False."""
        return not self.has_embed

    def scores(self, q, k, pos_q, pos_k):
        """Pre-softmax logits (B,H,Tq,Tk), causal mask excluded, composed from the hooks."""
        if self.has_rotate:
            # relative: times from the first query change nothing and keep decays bounded
            ref = pos_q[..., :1]
            q_r, k_r = self.rotate(q, k, pos_q - ref, pos_k - ref)
        else:
            q_r, k_r = q, k
        ct = compute_dtype(q.dtype)
        s = (q_r.to(ct) @ k_r.to(ct).transpose(-2, -1)) / math.sqrt(q.size(-1))
        b = self.bias(q, k, pos_q, pos_k) if self.has_bias else None
        return s if b is None else s + b


# -----------------------------------------------------------------------------
# The loader. `encodings` is also a standard-library package (codecs), imported at start-up, so
# `import encodings.rope` would find the wrong one: our folder is loaded under another name.

ENCODINGS_DIR = Path(__file__).resolve().parent / "encodings"
_PACKAGE = "nanope_encodings"


def available_encodings():
    """Names of the encodings in encodings/ (one file each; files starting with _ are skipped)."""
    return sorted(p.stem for p in ENCODINGS_DIR.glob("*.py") if not p.stem.startswith("_"))


def encoding_class(name):
    """The Encoding subclass defined in encodings/<name>.py."""
    names = available_encodings()
    if name not in names:
        raise ValueError(
            f"unknown encoding '{name}'{nearest_hint(name, names)}; available: {', '.join(names)}"
        )
    if _PACKAGE not in sys.modules:
        package = importlib.util.module_from_spec(
            importlib.machinery.ModuleSpec(_PACKAGE, None, is_package=True)
        )
        package.__path__ = [str(ENCODINGS_DIR)]
        sys.modules[_PACKAGE] = package
    module = importlib.import_module(f"{_PACKAGE}.{name}")
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Encoding) and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise ValueError(f"encodings/{name}.py must define exactly one Encoding subclass")
    return found[0]


def build_encoding(config):
    """A fresh encoding module for config.encoding, configured by config.encoding_kwargs."""
    cls = encoding_class(config.encoding)
    options = list(inspect.signature(cls.__init__).parameters)[2:]  # after self and config
    for key in config.encoding_kwargs or {}:
        if key not in options:
            raise ValueError(
                f"encoding '{config.encoding}' has no option '{key}'{nearest_hint(key, options)};"
                f" its options: {', '.join(options) or 'none'}"
            )
    return cls(config, **(config.encoding_kwargs or {}))
