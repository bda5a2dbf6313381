# Axial absolute positions (Reformer; Kitaev et al. 2020): two learned tables, encodings/axial.py.
encoding = "axial"
out_dir = "out/wikitext103/axial"
