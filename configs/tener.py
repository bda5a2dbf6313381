# TENER's relative encoding (Yan et al. 2019): Transformer-XL's q.R_{t-s} + u.k + v.R_{t-s} with
# R a fixed, unprojected sinusoid of t - s as wide as a head, direction-aware (R_{-x} != R_x);
# u, v learned per head and layer; logits keep 1/sqrt(d) (TENER drops it for NER). No options.
encoding = "tener"
out_dir = "out/wikitext103/tener"
