"""Data: acquisition, split files, the synthetic dataset and (later) clip loading.

Never imports ``actionmoe.models``.
"""
