"""
The GPT of nanoPE, read top to bottom: a GPT-2 style decoder (pre-LN blocks, GELU MLP, tied
embeddings, GPT-2 init), after karpathy/nanoGPT, whose attention takes a pluggable positional
encoding from encodings/. Its collaborators each have a file:
    encoding.py   the Encoding interface, the loader of encodings/, shared positional math
    attention.py  causal attention under an encoding: fused SDPA, FlexAttention or query blocks
    clock.py      time learned from the data (GPTConfig.time = "learned")
    kv_cache.py   what generate() keeps of the tokens so far
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.nn import functional as F

from attention import ATTN_BACKENDS, causal_attention
from clock import TIMES, clock_positions, make_clock
from encoding import build_encoding, encoding_class
from kv_cache import KVCache


@dataclass
class GPTConfig:
    block_size: int = 1024  # training length; only the learned table is tied to it
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # residual and embedding dropout
    attn_dropout: float = 0.0  # attention-probability dropout (FlexAttention has none)
    bias: bool = True  # biases in Linears and LayerNorms, like GPT-2
    encoding: str = "rope"  # a file name in encodings/
    encoding_kwargs: dict = field(default_factory=dict)  # that encoding's options
    attn_block_size: int = 512  # query block for bias / decaying encodings (memory O(block * T))
    attn_backend: str = "auto"  # auto (FlexAttention for bias encodings on CUDA) | sdpa | flex
    time: str = "index"  # "index": positions are token indices; "learned": LearnedClock per layer
    time_shared: bool = False  # learned time: one clock for every layer, from the embeddings
    max_train_position: int = 0  # randomized training positions: their bound (0: block_size)

    def __post_init__(self):
        """Every rule on the model's fields: a ValueError that says what to change."""
        for key in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "attn_block_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        for key in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        for key, valid in {"attn_backend": ATTN_BACKENDS, "time": TIMES}.items():
            if (got := getattr(self, key)) not in valid:
                raise ValueError(f"{key} must be one of {', '.join(valid)}; got '{got}'")
        if self.max_train_position and self.max_train_position < self.block_size:
            raise ValueError(
                f"max_train_position ({self.max_train_position}) must be >= block_size "
                f"({self.block_size}), or 0 for 8 x block_size"
            )
        encoding_class(self.encoding)  # an unknown name: the loader says which exist


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.attn_dropout = config.attn_dropout
        self.query_block = config.attn_block_size
        self.backend = config.attn_backend
        self.clock = None  # a LearnedClock of this layer's own (GPT sets it)
        self.inspect = None  # f(q, k, pos, pe), called with what attention gets (analyze.py)

    def forward(self, x, pos, pe, explicit=False, kv=None):
        B, T, C = x.size()
        if self.clock is not None:
            pos = clock_positions(self.clock, x, pos, kv)
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, d)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.inspect is not None:
            self.inspect(q, k, pos, pe)
        dropout_p = self.attn_dropout if self.training else 0.0
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
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, pos, pe, explicit=False, kv=None):
        x = x + self.attn(self.ln_1(x), pos, pe, explicit, kv)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as in GPT-2
        # GPT-2 init for the transformer; encodings initialise their own parameters
        self.transformer.apply(self._init_weights)
        for name, p in self.transformer.named_parameters():
            if name.endswith("c_proj.weight"):  # scaled residual projections (GPT-2 paper)
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        n_pe = config.n_layer if encoding_class(config.encoding).per_layer else 1
        self.pe = nn.ModuleList([build_encoding(config) for _ in range(n_pe)])
        # learned time: a clock per layer (each from its own input), or one from the embeddings
        self.clock = make_clock(config, self.pe[0]) if config.time_shared else None
        if not config.time_shared:
            for block in self.transformer.h:
                block.attn.clock = make_clock(config, self.pe[0])
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
        groups = [
            {"params": [p for p in params if is_decayed(p)], "weight_decay": weight_decay},
            {"params": [p for p in params if not is_decayed(p)], "weight_decay": 0.0},
        ]
        extra = {"fused": True} if device_type == "cuda" else {}  # torch >= 2.0 has fused AdamW
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **extra)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Sample max_new_tokens continuations of idx (B, T); temperature=0 decodes greedily. Each
        new token is one forward over a KVCache, which gives what a full forward would; learned
        tables crop the context to their size and, as dynamic NTK, then re-encode it every step
        (docs/encodings.md, "Decoding with a KV cache")."""
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
