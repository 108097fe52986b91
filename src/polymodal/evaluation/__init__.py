"""Evaluation: side-by-side comparison of modalities and fusion methods."""
