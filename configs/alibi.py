# ALiBi (Press, Smith, Lewis 2022, "Train Short, Test Long"): no position embedding; each head
# subtracts m_h * distance from its logits, with fixed geometric slopes m_h.
encoding = "alibi"
out_dir = "out/wikitext103/alibi"
