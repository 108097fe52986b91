"""Frozen-feature cache: backbone outputs computed once and reused across epochs, runs and ``compare`` calls."""

from .cache import FeatureCache, cache_root, get_cache

__all__ = ["FeatureCache", "cache_root", "get_cache"]
