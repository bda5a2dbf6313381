# Damped RoPE (the group-theory view A(t) = exp(tL) with eigenvalues alpha +- i omega; RetNet's
# per-head decays, Sun et al. 2023): RoPE whose logits also decay like e^{alpha_h (t - s)}.
# See DESIGN.md and encodings/damped_rope.py for the options (faithful logit decay by default).
encoding = "damped_rope"
out_dir = "out/wikitext103/damped_rope"
