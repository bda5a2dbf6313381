# DA-Transformer (Wu, Wu, Huang 2021): each head's ReLU-clipped logits are multiplied by a learned
# sigmoid of the weighted real distance, (1 + e^v) / (1 + e^{v - w |t - s|}), with w and v learned
# per head and per layer. No options.
encoding = "da"
out_dir = "out/wikitext103/da"
