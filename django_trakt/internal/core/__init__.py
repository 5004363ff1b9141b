"""Plumbing every layer uses: the clock, the cache, number parsing."""
