"""The generator family: every linear, translation-invariant, continuous positional encoding
(the group-theory view; GRAPE, Zhang et al. 2025) has F(t)^T G(s) = A(t - s), A(t) = exp(tL):

    q'_t = A(t)^T q_t,   k'_s = A(-s) k_s   =>   logit(t, s) = q_t^T A(t - s) k_s / sqrt(d).

L is block-diagonal; `blocks` lists its blocks in channel order, each a dict with a `type`, a
`count` ("rest": as many as fill the head) and the type's parameters. Per-head parameters (alpha,
lam, slope) take a scalar or n_head values; `learnable=True` trains them (alpha, lam stay <= 0).

  type           channels   A(t) of one block
  zero           1          1                                         (NoPE channels)
  decay          1          e^{alpha t}                               alpha <= 0
  rotation       2          R(-omega t)                               (RoPE; omega: RoPE schedule)
  damped         2          e^{alpha t} R(-omega t)                   (damped RoPE)
  jordan         size       e^{lam t} sum_{k<size} t^k N^k / k!       (real Jordan block, N shift)
  damped_jordan  2 * size   e^{alpha t} R(-omega t) (x) sum_k t^k N^k / k!   (complex Jordan block)
  nilpotent      0          [[1, t], [0, 1]] on two virtual coordinates q_aug = (1, 0),
                            k_aug = (0, -slope sqrt(d)): adds -slope (t - s) to the logit (ALiBi)

Defaults make `rotation` exactly `rope`, `damped` `damped_rope`, `zero` `nope` (omega_j =
base^(-2j / (2 count)), RetNet's alpha, lam = 0, ALiBi's slopes; no `blocks`: RoPE). The
polynomial blocks are a bias in t - s, sum_p (t - s)^p / p! sum_i q_i k_{i+p}: TF32 would round
their terms of size t^3/6 to noise on q and k (docs/encodings.md, "Exact under TF32").
"""

import math

import torch
import torch.nn as nn

from encoding import (
    Encoding,
    bounded_decay,
    bounded_decay_raw,
    compute_dtype,
    decay_query_block,
    hp_dtype,
    relative_distance,
    rope_frequencies,
    rotate_pairs,
    rotation_scores,
)

from .alibi import alibi_slopes
from .damped_rope import retnet_gammas

# channels one block of each type takes from q and k (None: depends on `size`)
BLOCK_TYPES = dict(
    zero=1, decay=1, rotation=2, damped=2, jordan=None, damped_jordan=None, nilpotent=0
)
BIAS_TYPES = {"jordan", "damped_jordan", "nilpotent"}  # applied in t - s, by bias()
BLOCK_KEYS = {"type", "count", "alpha", "omega", "lam", "size", "slope", "learnable"}


def block_width(spec):
    """Channels one block of this spec takes from q and k (0 for an unknown type)."""
    kind, size = spec.get("type"), int(spec.get("size", 2))
    return {"jordan": size, "damped_jordan": 2 * size}.get(kind, BLOCK_TYPES.get(kind) or 0)


def poly_matrix(t, m):
    """(T, m, m) matrices exp(t N) for the m x m shift N: P[i, j] = t^(j-i) / (j-i)! for j >= i."""
    idx = torch.arange(m, device=t.device)
    power = idx[None, :] - idx[:, None]
    p = power.clamp(min=0).to(t.dtype)
    values = t[:, None, None] ** p / torch.exp(torch.lgamma(p + 1))
    return torch.where(power >= 0, values, torch.zeros_like(values))


def poly_logits(q, k, delta):
    """sum over blocks of q^T exp((t - s) N) k = sum_p (t - s)^p / p! S_p, q, k (B, H, T, count,
    size, pair), delta = t - s; S_p = sum_i q_i . k_{i+p} is one matmul."""
    size = q.size(-2)
    out, power = 0.0, torch.ones_like(delta)
    for p in range(size):
        qp, kp = q[..., : size - p, :].flatten(-3), k[..., p:, :].flatten(-3)
        out = out + power * (qp @ kp.transpose(-2, -1))
        power = power * delta / (p + 1)
    return out


def rotation_matrix(phi):
    """(..., 2, 2) matrices R(phi) = [[cos, -sin], [sin, cos]]."""
    c, s = phi.cos(), phi.sin()
    return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)


class Generator(Encoding):
    def __init__(self, config, blocks=None, base=10000.0, max_alpha=0.1):
        super().__init__(config)
        d = self.head_dim
        blocks = blocks if blocks is not None else [dict(type="rotation", count=d // 2)]
        self.groups = []  # (type, first channel, last channel + 1, count, size)
        self._fixed = {}  # fixed block parameters, float64, by name (moved at first use)
        self.max_alpha = max_alpha
        worst_decay, start = 0.0, 0
        for i, spec in enumerate(blocks):
            spec = dict(spec)
            kind, count, size, width = self._check_block(i, spec, blocks)
            if count == 0:  # e.g. count="rest" with nothing left: the block is absent
                continue
            worst_decay = max(worst_decay, self._add_parameters(i, spec, kind, count, base))
            self.groups.append((kind, start, start + count * width, count, size))
            start += count * width
        if start != d:
            raise ValueError(
                f"generator blocks use {start} channels but the head dimension is {d}: add"
                f" dict(type='zero', count={d - start}) or change the counts"
                if start < d
                else f"generator blocks use {start} channels but the head dimension is only {d}"
            )
        self.kinds = kinds = {g[0] for g in self.groups}
        self.orthogonal = kinds <= {"zero", "rotation", "nilpotent"}
        self.max_query_block = decay_query_block(worst_decay)
        self.has_rotate = bool(kinds - {"zero", "nilpotent"})
        self.has_bias = bool(kinds & BIAS_TYPES)

    def _check_block(self, i, spec, blocks):
        """Block spec i checked: its type, count (resolving "rest"), size and channels per block."""
        kind = spec.get("type")
        if kind not in BLOCK_TYPES:
            raise ValueError(
                f"generator block {i}: type {kind!r} is not one of {list(BLOCK_TYPES)}"
            )
        unknown = set(spec) - BLOCK_KEYS
        if unknown:
            raise ValueError(
                f"generator block {i}: unknown keys {sorted(unknown)}; valid: {sorted(BLOCK_KEYS)}"
            )
        size, width, count = int(spec.get("size", 2)), block_width(spec), spec.get("count", 1)
        if count == "rest":  # as many blocks as fill the channels the others leave
            fixed = [b for j, b in enumerate(blocks) if j != i and b.get("count", 1) != "rest"]
            others = sum(int(b.get("count", 1)) * block_width(b) for b in fixed)
            count = max((self.head_dim - others) // max(width, 1), 0)  # < 0: __init__ says so
        return kind, int(count), size, width

    def _add_parameters(self, i, spec, kind, count, base):
        """Block i's omega, decay and slope; returns its largest decay of q and k (0: none)."""
        g, learn, worst = len(self.groups), bool(spec.get("learnable", False)), 0.0
        if learn:  # score_mod would capture slopes computed in the graph (encoding.py)
            self.compiled_flex_grad = False
        if kind in ("rotation", "damped", "damped_jordan"):
            omega = spec.get("omega")
            omega = rope_frequencies(2 * count, base) if omega is None else omega
            omega = torch.as_tensor(omega, dtype=torch.float64)
            if omega.ndim > 1 or omega.numel() not in (1, count):
                raise ValueError(f"generator block {i}: give one omega or {count} (one per block)")
            self._param(g, "omega", omega.expand(count), learn)
        if kind in ("decay", "damped", "damped_jordan", "jordan"):
            name = "lam" if kind == "jordan" else "alpha"
            default = 0.0 if kind == "jordan" else [math.log(x) for x in retnet_gammas(self.n_head)]
            value = self._per_head(spec.get(name, default), f"block {i} {name}")
            if (value > 0).any():
                raise ValueError(f"generator block {i}: {name} must be <= 0 (a decay)")
            raw = bounded_decay_raw(value, self.max_alpha) if learn else value  # in (-max_alpha, 0)
            self._param(g, "decay", raw, learn)
            if kind in ("decay", "damped"):  # applied to q and k, not in t - s
                worst = self.max_alpha if learn else float(-value.min())
        if kind == "nilpotent":
            slope = self._per_head(spec.get("slope", alibi_slopes(self.n_head)), f"block {i} slope")
            self._param(g, "slope", slope, learn)
        return worst

    # --- parameters: buffers when fixed, nn.Parameters when learnable
    def _per_head(self, value, what):
        v = torch.as_tensor(value, dtype=torch.float64)
        v = v.expand(self.n_head) if v.ndim == 0 else v
        if v.shape != (self.n_head,):
            raise ValueError(f"generator {what}: give one value or {self.n_head} (one per head)")
        return v.clone()

    def _param(self, i, name, value, learn):
        if learn:
            self.register_parameter(f"g{i}_{name}", nn.Parameter(value.clone().float()))
        else:  # fixed values stay float64 off the module, out of reach of .float() / .half()
            self._fixed[f"g{i}_{name}"] = value.clone()

    def get(self, i, name, like):
        """Block i's parameter `name` (a learnable decay bounded) on like's device, in hp_dtype."""
        key, device = f"g{i}_{name}", like.device
        if key in self._parameters:
            value = self._parameters[key]
            value = bounded_decay(value, self.max_alpha) if name == "decay" else value
            return value.to(device=device, dtype=hp_dtype(device))
        # moved to the device at first use and kept there: no blocking copy at every call on CUDA
        if self._fixed[key].device != device:
            self._fixed[key] = self._fixed[key].to(device=device, dtype=hp_dtype(device))
        return self._fixed[key]

    def _angle(self, i, pos):
        """cos, sin of the (T, count) angles omega t ((B|1, H|1, T, count) on a clock), computed in
        float64: float32 would be off by ~t * 6e-8 rad."""
        angle = pos.to(hp_dtype(pos.device))[..., None] * self.get(i, "omega", pos)
        return angle.cos(), angle.sin()

    def decay(self, i, like):
        """Block i's decay rates alpha (or lam) per head, (H,), all <= 0, in like's dtype."""
        return self.get(i, "decay", like).to(like.dtype)

    # --- the fast path, part 1: q' = A(t)^T q, k' = A(-s) k for the zero, decay and rotation blocks
    def _transform(self, i, x, pos, sign):
        kind = self.groups[i][0]
        if kind in BIAS_TYPES:  # their logits come from bias(): zeros here
            return torch.zeros_like(x)
        if kind in ("rotation", "damped"):
            cos, sin = self._angle(i, pos)
            x = rotate_pairs(x, cos.to(x.dtype), sin.to(x.dtype))
        if kind in ("decay", "damped"):  # alpha (H, 1) against t: (H, T), or (B|1, H, T)
            x = x * torch.exp(sign * self.decay(i, x)[:, None] * pos.to(x.dtype))[..., None]
        return x

    def rotate(self, q, k, pos_q, pos_k):
        ct = compute_dtype(q.dtype)
        qs, ks = [], []
        for i, (_, c0, c1, _, _) in enumerate(self.groups):
            qs.append(self._transform(i, q[..., c0:c1].to(ct), pos_q, 1.0))
            ks.append(self._transform(i, k[..., c0:c1].to(ct), pos_k, -1.0))
        return torch.cat(qs, -1).to(q.dtype), torch.cat(ks, -1).to(k.dtype)

    # --- the fast path, part 2: the polynomial blocks, as a bias computed in t - s
    def bias(self, q, k, pos_q, pos_k):
        ct = compute_dtype(q.dtype)
        # causal: keys after the query are masked, so they get t - s = 0 (not an overflowing decay)
        delta = relative_distance(pos_q, pos_k).to(ct).clamp(min=0)  # (B|1, H|1,) Tq, Tk
        total = 0.0
        for i, (kind, c0, c1, count, size) in enumerate(self.groups):
            if kind == "nilpotent":  # (1, H, 1, 1) slopes: a 4-D bias (SDPA is slow on a 3-D one)
                total = total - self.get(i, "slope", q).to(ct)[None, :, None, None] * delta
            elif kind in BIAS_TYPES:
                shape = (count, size, 1) if kind == "jordan" else (count, size, 2)
                qg = q[..., c0:c1].to(ct).unflatten(-1, shape)  # (B, H, Tq, count, size, pair)
                kg = k[..., c0:c1].to(ct).unflatten(-1, shape)
                if kind == "damped_jordan":  # R(omega t) q, R(omega s) k: orthogonal, no cancelling
                    qg, kg = self._rotate_pairs(i, qg, pos_q), self._rotate_pairs(i, kg, pos_k)
                part = poly_logits(qg, kg, delta) / math.sqrt(self.head_dim)
                total = total + part * torch.exp(self.decay(i, delta)[:, None, None] * delta)
        return total

    def _rotate_pairs(self, i, x, pos):  # x (.., T, count, size, 2): block c's pairs by omega_c t
        cos, sin = (v.repeat_interleave(x.size(-2), -1) for v in self._angle(i, pos))
        return rotate_pairs(x.flatten(-3), cos, sin).unflatten(-1, x.shape[-3:])

    def score_mod(self, q, pos):  # nilpotent blocks only (ALiBi): the bias, element-wise
        if not self.kinds & BIAS_TYPES <= {"nilpotent"} or not self.has_bias:
            return None
        ct = compute_dtype(q.dtype)
        slope = sum(
            self.get(i, "slope", q).to(ct) for i, g in enumerate(self.groups) if g[0] == "nilpotent"
        )
        t = pos  # t - s in pos's dtype, then cast, as bias(): float64 times far out stay exact
        return lambda score, b, h, i, j: score - slope[h] * (t[i] - t[j]).to(ct)

    # --- the reference: q^T A(t - s) k with A built explicitly for every (t, s)
    def scores(self, q, k, pos_q, pos_k):
        delta = relative_distance(pos_q, pos_k).to(hp_dtype(q.device))  # (B|1, H|1,) Tq, Tk
        ts = "ts" if delta.dim() == 2 else "bhts"  # einsum labels of a (t, s) table
        out_dtype = compute_dtype(q.dtype)
        q, k = q.to(delta.dtype), k.to(delta.dtype)
        total = torch.zeros(q.shape[:3] + k.shape[2:3], dtype=delta.dtype, device=q.device)
        for i, (kind, c0, c1, count, size) in enumerate(self.groups):
            qg, kg = q[..., c0:c1], k[..., c0:c1]
            if kind in ("zero", "decay"):
                part = qg @ kg.transpose(-2, -1)
            elif kind in ("rotation", "damped"):
                part = rotation_scores(qg, kg, delta[..., None] * self.get(i, "omega", delta))
            elif kind == "jordan":
                P = poly_matrix(delta.flatten(), size).view(*delta.shape, size, size)
                qg, kg = qg.unflatten(-1, (count, size)), kg.unflatten(-1, (count, size))
                part = torch.einsum(f"bhtci,{ts}ij,bhscj->bhts", qg, P, kg)
            elif kind == "damped_jordan":
                P = poly_matrix(delta.flatten(), size).view(*delta.shape, size, size)
                phi = delta[..., None] * self.get(i, "omega", delta)
                R = rotation_matrix(-phi)  # (.., Tq, Tk, count, 2, 2)
                qg, kg = qg.unflatten(-1, (count, size, 2)), kg.unflatten(-1, (count, size, 2))
                part = torch.einsum(f"bhtcpx,{ts}pr,{ts}cxy,bhscry->bhts", qg, P, R, kg)
            else:  # nilpotent: (1, 0) [[1, t - s], [0, 1]] (0, -m sqrt(d)) = -m sqrt(d) (t - s)
                slope = self.get(i, "slope", delta)
                part = -slope[:, None, None] * math.sqrt(self.head_dim) * delta
            if kind in ("decay", "damped", "jordan", "damped_jordan"):
                part = part * torch.exp(self.decay(i, delta)[:, None, None] * delta)
            total = total + part
        return (total / math.sqrt(self.head_dim)).to(out_dtype)
