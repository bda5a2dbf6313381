# Damped RoPE (RetNet's per-head decays; docs/generator.md): encodings/damped_rope.py.
encoding = "damped_rope"
out_dir = "out/wikitext103/damped_rope"
