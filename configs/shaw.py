# Relative position representations (Shaw, Uszkoreit, Vaswani 2018): encodings/shaw.py.
encoding = "shaw"
out_dir = "out/wikitext103/shaw"
