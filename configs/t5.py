# T5 relative bias (Raffel et al. 2020): a learned scalar per distance bucket and head.
encoding = "t5"
out_dir = "out/wikitext103/t5"
