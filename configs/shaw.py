# Relative position representations (Shaw, Uszkoreit, Vaswani 2018): a learned vector per clipped
# distance, added to the keys inside the logits. encoding_kwargs: max_relative_position (K, 16).
encoding = "shaw"
out_dir = "out/wikitext103/shaw"
