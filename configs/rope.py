# Rotary position embedding (Su et al. 2021, "RoFormer"): encodings/rope.py.
encoding = "rope"
out_dir = "out/wikitext103/rope"
