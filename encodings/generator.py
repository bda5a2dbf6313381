"""The generator family: every linear, translation-invariant, continuous positional encoding
(the seeds' group-theory post; GRAPE, Zhang et al. 2025). Such an encoding satisfies
F(t)^T G(s) = A(t - s) with A(t) = exp(tL) for a generator L, and we apply it as

    q'_t = A(t)^T q_t,   k'_s = A(-s) k_s   =>   logit(t, s) = q_t^T A(t - s) k_s / sqrt(d).

L is block-diagonal; `blocks` lists its blocks in channel order, each a dict with a `type`, a
`count` (how many such blocks) and the type's parameters. Per head parameters (alpha, lam, slope)
take a scalar or a list of n_head values; `learnable=True` trains them (alpha, lam stay <= 0).
One block may give count="rest": as many blocks as fill the head's remaining channels.

  type           channels   A(t) of one block
  zero           1          1                                         (NoPE channels)
  decay          1          e^{alpha t}                               alpha <= 0
  rotation       2          R(-omega t)                               (RoPE; omega: RoPE schedule)
  damped         2          e^{alpha t} R(-omega t)                   (damped RoPE)
  jordan         size       e^{lam t} sum_{k<size} t^k N^k / k!       (real Jordan block, N shift)
  damped_jordan  2 * size   e^{alpha t} R(-omega t) (x) sum_k t^k N^k / k!   (complex Jordan block)
  nilpotent      +2 extra   [[1, t], [0, 1]] on two appended coordinates q_aug = (1, 0),
                            k_aug = (0, -slope sqrt(d)): adds -slope (t - s) to the logit (ALiBi)

R(-omega t) follows RoPE's sign, so `rotation` blocks with the default frequencies are exactly
`rope`, `damped` blocks are `damped_rope`, `zero` blocks are `nope`. Defaults: omega_j =
base^(-2j / (2 count)) over a group's blocks (RoPE's schedule), alpha = RetNet's ln(1 - 2^(-5-h)),
lam = 0, slope = ALiBi's slopes. Without `blocks` the generator is all rotations, i.e. RoPE.
Every block has a closed-form exponential; attention feeds block-relative times, so decays and
polynomials stay bounded (and exact) far from the origin. Positions may be float times.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model import (
    Encoding,
    compute_dtype,
    hp_dtype,
    pair_products,
    relative_distance,
    rope_frequencies,
    rotate_pairs,
)

from .alibi import alibi_slopes
from .damped_rope import retnet_gammas

# channels one block of each type takes from q and k (None: depends on `size`)
BLOCK_TYPES = {
    "zero": 1,
    "decay": 1,
    "rotation": 2,
    "damped": 2,
    "jordan": None,
    "damped_jordan": None,
    "nilpotent": 0,
}
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


def rotation_matrix(phi):
    """(..., 2, 2) matrices R(phi) = [[cos, -sin], [sin, cos]]."""
    c, s = phi.cos(), phi.sin()
    return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)


class Generator(Encoding):
    def __init__(self, config, blocks=None, base=10000.0, max_alpha=0.1):
        super().__init__(config)
        d, H = self.head_dim, self.n_head
        blocks = blocks if blocks is not None else [dict(type="rotation", count=d // 2)]
        self.groups = []  # (type, first channel, last channel + 1, count, size)
        self._fixed = {}  # fixed block parameters, float64, by name
        self._fixed_cache = {}  # ... and their copies by (name, device, dtype)
        self.max_alpha = max_alpha
        worst_decay, start = 0.0, 0
        for i, spec in enumerate(blocks):
            spec = dict(spec)
            kind = spec.get("type")
            if kind not in BLOCK_TYPES:
                raise ValueError(
                    f"generator block {i}: type {kind!r} is not one of {list(BLOCK_TYPES)}"
                )
            unknown = set(spec) - BLOCK_KEYS
            if unknown:
                raise ValueError(
                    f"generator block {i}: unknown keys {sorted(unknown)};"
                    f" valid: {sorted(BLOCK_KEYS)}"
                )
            size, width = int(spec.get("size", 2)), block_width(spec)
            count = spec.get("count", 1)
            if count == "rest":  # as many blocks as fill the channels the others leave
                others = sum(
                    int(b.get("count", 1)) * block_width(b)
                    for j, b in enumerate(blocks)
                    if j != i and b.get("count", 1) != "rest"
                )
                count = (d - others) // max(width, 1)
                if count < 0:
                    raise ValueError(
                        f"generator blocks need {others} channels but the head dimension is"
                        f" only {d}"
                    )
            count = int(count)
            if count == 0:  # e.g. count="rest" with nothing left: the block is absent
                continue
            learn = bool(spec.get("learnable", False))
            if kind in ("rotation", "damped", "damped_jordan"):
                omega = spec.get("omega")
                omega = rope_frequencies(2 * count, base) if omega is None else omega
                omega = torch.as_tensor(omega, dtype=torch.float64)
                if omega.ndim > 1 or omega.numel() not in (1, count):
                    raise ValueError(
                        f"generator block {i}: give one omega or {count} (one per block)"
                    )
                self._param(i, "omega", omega.expand(count), learn)
            if kind in ("decay", "damped", "damped_jordan", "jordan"):
                name = "lam" if kind == "jordan" else "alpha"
                default = 0.0 if kind == "jordan" else [math.log(g) for g in retnet_gammas(H)]
                value = self._per_head(spec.get(name, default), f"block {i} {name}")
                if (value > 0).any():
                    raise ValueError(f"generator block {i}: {name} must be <= 0 (a decay)")
                self._decay_param(i, value, learn)
                worst_decay = max(worst_decay, max_alpha if learn else float(-value.min()))
            if kind == "nilpotent":
                slope = self._per_head(spec.get("slope", alibi_slopes(H)), f"block {i} slope")
                self._param(i, "slope", slope, learn)
            self.groups.append((kind, start, start + count * width, count, size))
            start += count * width
        if start != d:
            raise ValueError(
                f"generator blocks use {start} channels but the head dimension is {d}: add"
                f" dict(type='zero', count={d - start}) or change the counts"
                if start < d
                else f"generator blocks use {start} channels but the head dimension is only {d}"
            )
        kinds = {g[0] for g in self.groups}
        self.orthogonal = kinds <= {"zero", "rotation"}
        self.max_query_block = max(1, int(60.0 / worst_decay)) if worst_decay > 0 else None
        if kinds & {"jordan", "damped_jordan"}:
            # polynomial terms (t - t0)^k / k! with a decay make sharply peaked, ill-conditioned
            # logits; shorter blocks keep float32 attention within ~1e-3 of float64 (measured)
            self.max_query_block = min(self.max_query_block or 128, 128)

    # --- parameters: buffers when fixed, nn.Parameters when learnable
    def _per_head(self, value, what):
        v = torch.as_tensor(value, dtype=torch.float64)
        if v.ndim == 0:
            v = v.expand(self.n_head)
        if v.shape != (self.n_head,):
            raise ValueError(f"generator {what}: give one value or {self.n_head} (one per head)")
        return v.clone()

    def _param(self, i, name, value, learn):
        if learn:
            self.register_parameter(f"g{i}_{name}", nn.Parameter(value.clone().float()))
        else:  # fixed values stay float64 off the module, out of reach of .float() / .half()
            self._fixed[f"g{i}_{name}"] = value.clone()

    def get(self, i, name, like):
        """Block i's parameter `name` on like's device, in hp_dtype (float64) for precision."""
        key = f"g{i}_{name}"
        if key in self._parameters:
            return self._parameters[key].to(device=like.device, dtype=hp_dtype(like.device))
        return self._fixed_on(key, like.device, hp_dtype(like.device))

    def _fixed_on(self, key, device, dtype):
        # fixed values are copied to the device once, not at every call (a blocking copy on CUDA)
        cache_key = (key, str(device), dtype)
        if cache_key not in self._fixed_cache:
            self._fixed_cache[cache_key] = self._fixed[key].to(device=device, dtype=dtype)
        return self._fixed_cache[cache_key]

    def _angle(self, i, pos):
        """(T, count) rotation angles omega t in float64 -- in float32 they would be off by ~t *
        6e-8 rad, 4e-3 at t = 60,000 -- returned as cos, sin in the compute dtype."""
        angle = pos.to(hp_dtype(pos.device))[:, None] * self.get(i, "omega", pos)[None, :]
        return angle.cos(), angle.sin()

    def _decay_param(self, i, value, learn):
        if learn:  # decay = -softplus(raw) keeps it <= 0; raw = log(expm1(-decay)) inverts it
            raw = torch.log(torch.expm1((-value).clamp(min=1e-8, max=self.max_alpha)))
            self.register_parameter(f"g{i}_decay", nn.Parameter(raw.float()))
        else:
            self._fixed[f"g{i}_decay"] = value.clone()

    def decay(self, i, like):
        """Block i's decay rates alpha (or lam) per head, (H,), all <= 0."""
        key = f"g{i}_decay"
        if key in self._parameters:
            return -F.softplus(self._parameters[key]).clamp(max=self.max_alpha).to(like.dtype)
        return self._fixed_on(key, like.device, like.dtype)

    # --- the fast path: q' = A(t)^T q, k' = A(-s) k, group by group
    def _transform(self, i, x, pos, query):
        kind, _, _, count, size = self.groups[i]
        sign = 1.0 if query else -1.0
        t = pos.to(x.dtype)
        if kind in ("rotation", "damped"):
            cos, sin = self._angle(i, pos)
            x = rotate_pairs(x, cos.to(x.dtype), sin.to(x.dtype))
        if kind == "jordan":
            x = x.unflatten(-1, (count, size))
            P = poly_matrix(t if query else -t, size)
            if query:  # q'_j = sum_i P(t)[i, j] q_i
                x = torch.einsum("bhtci,tij->bhtcj", x, P).flatten(-2)
            else:  # k'_i = sum_j P(-s)[i, j] k_j
                x = torch.einsum("tij,bhtcj->bhtci", P, x).flatten(-2)
        if kind == "damped_jordan":
            x = x.unflatten(-1, (count, size, 2))  # (B, H, T, count, size, pair)
            c, s = (v.to(x.dtype)[:, :, None] for v in self._angle(i, pos))
            a, b = x[..., 0], x[..., 1]
            x = torch.stack((a * c - b * s, a * s + b * c), dim=-1)  # R(omega t) on every pair
            P = poly_matrix(t if query else -t, size)
            if query:
                x = torch.einsum("bhtcpx,tpr->bhtcrx", x, P).flatten(-3)
            else:
                x = torch.einsum("tpr,bhtcrx->bhtcpx", P, x).flatten(-3)
        if kind in ("decay", "damped", "jordan", "damped_jordan"):
            x = x * torch.exp(sign * self.decay(i, x)[:, None] * t[None, :])[..., None]
        return x

    def rotate(self, q, k, pos_q, pos_k):
        ct = torch.promote_types(q.dtype, torch.float32)  # float32, or float64 in tests
        tq, tk = pos_q.to(ct), pos_k.to(ct)  # for the appended coordinates only
        qs, ks = [], []
        for i, (kind, c0, c1, _, _) in enumerate(self.groups):
            if kind == "nilpotent":  # two appended coordinates: q_aug = (1, t), k_aug = (m s, -m)
                m = self.get(i, "slope", q).to(ct)[:, None] * math.sqrt(self.head_dim)  # (H, 1)
                B = q.size(0)
                qs.append(torch.stack((torch.ones_like(tq), tq), -1).expand(B, self.n_head, -1, 2))
                ks.append(torch.stack((m * tk, -m.expand(-1, tk.numel())), -1).expand(B, -1, -1, 2))
            else:
                qs.append(self._transform(i, q[..., c0:c1].to(ct), pos_q, True))
                ks.append(self._transform(i, k[..., c0:c1].to(ct), pos_k, False))
        return torch.cat(qs, -1).to(q.dtype), torch.cat(ks, -1).to(k.dtype)

    # --- the reference: q^T A(t - s) k with A built explicitly for every (t, s)
    def scores(self, q, k, pos_q, pos_k):
        delta = relative_distance(pos_q, pos_k).to(hp_dtype(q.device))  # (Tq, Tk)
        out_dtype = compute_dtype(q.dtype)
        q, k = q.to(delta.dtype), k.to(delta.dtype)
        total = torch.zeros(q.shape[:3] + k.shape[2:3], dtype=delta.dtype, device=q.device)
        for i, (kind, c0, c1, count, size) in enumerate(self.groups):
            qg, kg = q[..., c0:c1], k[..., c0:c1]
            if kind in ("zero", "decay"):
                part = qg @ kg.transpose(-2, -1)
            elif kind in ("rotation", "damped"):
                phi = delta[..., None] * self.get(i, "omega", delta)
                dot, cross = pair_products(qg, kg)
                part = (phi.cos() * dot + phi.sin() * cross).sum(-1)
            elif kind == "jordan":
                P = poly_matrix(delta.flatten(), size).view(*delta.shape, size, size)
                part = torch.einsum(
                    "bhtci,tsij,bhscj->bhts",
                    qg.unflatten(-1, (count, size)),
                    P,
                    kg.unflatten(-1, (count, size)),
                )
            elif kind == "damped_jordan":
                P = poly_matrix(delta.flatten(), size).view(*delta.shape, size, size)
                phi = delta[..., None] * self.get(i, "omega", delta)
                R = rotation_matrix(-phi)  # (Tq, Tk, count, 2, 2)
                qg, kg = qg.unflatten(-1, (count, size, 2)), kg.unflatten(-1, (count, size, 2))
                part = torch.einsum("bhtcpx,tspr,tscxy,bhscry->bhts", qg, P, R, kg)
            else:  # nilpotent: (1, 0) [[1, t - s], [0, 1]] (0, -m sqrt(d)) = -m sqrt(d) (t - s)
                slope = self.get(i, "slope", delta)
                part = -slope[:, None, None] * math.sqrt(self.head_dim) * delta
            if kind in ("decay", "damped", "jordan", "damped_jordan"):
                part = part * torch.exp(self.decay(i, delta)[:, None, None] * delta)
            total = total + part
        return (total / math.sqrt(self.head_dim)).to(out_dtype)
