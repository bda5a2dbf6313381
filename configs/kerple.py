# KERPLE (Chi et al. 2022): a learned kernel of the distance per head, -r1 log(1 + r2 (t - s))
# ("log", the paper's best) or -r1 (t - s)^r2 ("power", 0 < r2 <= 2); one (r1, r2) per head,
# shared by all layers, as in the authors' code. encoding_kwargs: variant ("log").
encoding = "kerple"
out_dir = "out/wikitext103/kerple"
