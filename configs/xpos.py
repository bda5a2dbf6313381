# xPos (Sun et al. 2022, "A Length-Extrapolatable Transformer"): RoPE whose rotation pair i also
# decays as zeta_i^((t - s)/B), zeta_i = (2i/d + gamma) / (1 + gamma): the fast pairs decay
# fastest, one rate per frequency. encoding_kwargs: scale_base (B, 512), gamma (0.4), base (10000),
# the authors' torchscale values.
encoding = "xpos"
out_dir = "out/wikitext103/xpos"
