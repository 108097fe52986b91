"""Text generation (captioning, free-form answers): the target tokenizer, the Transformer decoder over the
encoders' token sequences, the sequence-to-sequence model and batched greedy / beam-search decoding."""
