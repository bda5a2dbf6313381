# Huang et al. 2020, "Improve Transformer Models with Better Relative Position Embeddings": a
# learned embedding of the clipped distance i - j multiplies or joins the query-key product; one
# table per layer, shared by its heads. encoding_kwargs: method (4: q.k + q.a + k.a, the paper's
# best; 1 and 2: a scalar times q.k; 3: sum_c q_c k_c a_c) and max_relative_position (K, 16).
encoding = "huang"
out_dir = "out/wikitext103/huang"
