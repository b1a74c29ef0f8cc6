"""Encoders: single-cell profiles to representations (identity, pca, vae, transformer over gene tokens, graph over spatial neighbours)."""
