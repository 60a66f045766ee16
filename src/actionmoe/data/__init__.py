"""Data: acquisition, split files, the synthetic dataset, decoding, sampling, transforms, cache.

Never imports ``actionmoe.models``.
"""
