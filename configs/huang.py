# Huang et al. 2020, relative position embeddings (method 4 by default): encodings/huang.py.
encoding = "huang"
out_dir = "out/wikitext103/huang"
