"""NoPE: no positional encoding; the causal mask alone lets a decoder infer order (Haviv et al.
2022; Kazemnejad et al. 2023).
"""

from encoding import Encoding


class NoPE(Encoding):
    pass
