# DA-Transformer (Wu, Wu, Huang 2021): logits scaled by a learned function of |t - s|.
encoding = "da"
out_dir = "out/wikitext103/da"
