# Sandwich (Chi et al. 2023): no parameters; each head n adds the inner product of sinusoidal
# embeddings of t and s (a cosine sum over frequencies of t - s), divided by 8n/H.
# encoding_kwargs: d_bar (128, the sinusoid's dimension).
encoding = "sandwich"
out_dir = "out/wikitext103/sandwich"
