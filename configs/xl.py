# Transformer-XL's relative encoding (Dai et al. 2019), without segment recurrence: the logits gain
# q.W_R R_{t-s} + u.k + v.W_R R_{t-s}, R the sinusoid of the distance t - s (n_embd wide); W_R,
# u, v learned per layer (the authors' WikiText-103 setting, untie_r=True). No options.
encoding = "xl"
out_dir = "out/wikitext103/xl"
