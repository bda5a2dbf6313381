# CoPE (Golovneva et al. 2024): positions counted by content gates (encodings/cope.py).
encoding = "cope"
out_dir = "out/wikitext103/cope"
