# Damped RoPE (RetNet's per-head decays, Sun et al. 2023; A(t) = exp(tL) with eigenvalues
# alpha +- i omega in docs/generator.md): RoPE whose logits also decay like e^{alpha_h (t - s)}.
# Options (faithful logit decay by default): encodings/damped_rope.py, docs/encodings.md.
encoding = "damped_rope"
out_dir = "out/wikitext103/damped_rope"
