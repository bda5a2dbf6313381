# Sandwich (Chi et al. 2023): a parameter-free sinusoidal bias per head (encodings/sandwich.py).
encoding = "sandwich"
out_dir = "out/wikitext103/sandwich"
