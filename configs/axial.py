# Axial absolute positions (Reformer; Kitaev et al. 2020): P[n] = concat(P1[n mod n1],
# P2[n // n1]), two learned tables added to the token embeddings; like the learned table, no
# position past n1 n2. encoding_kwargs: shape ((n1, n2), default the factorisation of block_size
# closest to square, here (32, 16)) and dims ((d1, d2), default 3/4 and 1/4 of n_embd: (576, 192)).
encoding = "axial"
out_dir = "out/wikitext103/axial"
