"""Corpus loading, cleaning, tokenizer training and packing. Never imports `mlm`."""
