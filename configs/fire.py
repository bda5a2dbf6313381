# FIRE (Li et al. 2023): a learned bias f(psi(t - s) / psi(max(t, L))) per head, psi(x) =
# log(c x + 1), f a 1 -> 32 -> heads ReLU MLP, c and L learned, one FIRE per layer. Depends on
# the query position t past L, so it is not shift invariant. encoding_kwargs: mlp_width (32),
# init_c (0.1), init_L (512.0: here L = the training length, so training sees inputs in [0, 1)).
encoding = "fire"
out_dir = "out/wikitext103/fire"
