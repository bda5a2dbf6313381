# CoPE, Contextual Position Encoding (Golovneva et al. 2024): gates g_ts = sigmoid(q_t.k_s/sqrt(d))
# count the keys between s and t, p_ts = min(sum_{u=s..t} g_tu, npos_max), and the logit gains
# q_t . e[p_ts] / sqrt(d), e a learned table per layer interpolated between integer positions.
# encoding_kwargs: npos_max (None: block_size, the authors' default).
encoding = "cope"
out_dir = "out/wikitext103/cope"
