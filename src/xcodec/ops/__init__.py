"""Runtime helpers that change how a stage computes, never what: per-item lengths and masks
through padded batches, overlap-save time chunking, the time-major convolution layout."""
