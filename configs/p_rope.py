# p-RoPE (Barbero et al. 2024, "Round and round we go! What makes Rotary Positional Encodings
# useful?"): RoPE rotating only the fraction p of its pairs with the highest frequencies; the
# channels of the lowest frequencies stay unrotated (NoPE). The paper trained Gemma 2B models with
# p = 0.25 and 0.75 at 8k context; 0.75 here. encoding_kwargs of rope: p (1.0 = RoPE), base, and
# the context-extension options (scaling, factor, original_length), which act on the kept pairs.
encoding = "rope"
encoding_kwargs = {"p": 0.75}
out_dir = "out/wikitext103/p_rope"
