# Rotary position embedding (Su et al. 2021, "RoFormer"): rotate each pair of query and key
# channels by position * theta_i, theta_i = 10000^(-2i/d), so that logits depend on t - s.
encoding = "rope"
out_dir = "out/wikitext103/rope"
