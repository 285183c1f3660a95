"""Building blocks, each independent of any codec: activations (Snake, SnakeBeta), the
anti-aliased activation, FSQ and RVQ quantisers, the pre-norm transformer layer, the ISTFT head."""
