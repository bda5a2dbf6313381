"""NoPE: no positional encoding at all.

    logit(t, s) = q_t . k_s / sqrt(d)

A causal decoder can still infer order, because the causal mask makes token t attend to exactly t
tokens (Haviv et al. 2022, "Transformer Language Models without Positional Encodings Still Learn
Positional Information"; Kazemnejad et al. 2023, "The Impact of Positional Encoding on Length
Generalization in Transformers"). Every hook keeps its do-nothing default.
"""

from encoding import Encoding


class NoPE(Encoding):
    pass
