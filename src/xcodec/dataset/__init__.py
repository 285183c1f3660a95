"""Corpus tokenization: manifests in, Parquet shards of codes out, resumable."""
