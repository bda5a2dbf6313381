# T5 relative bias (Raffel et al. 2020): a learned scalar per (log-spaced distance bucket, head),
# one table shared by all layers. encoding_kwargs: num_buckets (32), max_distance (128).
encoding = "t5"
out_dir = "out/wikitext103/t5"
