"""Codec stages assembled from the building blocks in :mod:`xcodec.layers`: BigCodec's acoustic
encoder, DAC's encoder and decoder, the Vocos decoder's ResNet blocks, the semantic adapter."""
