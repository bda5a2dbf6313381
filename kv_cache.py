"""The KV cache of GPT.generate(): RoPE's keys are kept rotated, every other encoding's raw, its
decays and biases applied relative to each query (docs/encodings.md, "Decoding with a KV cache")."""

import torch


class KVCache:
    """Positions of the tokens so far and, per layer, their keys and values."""

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
