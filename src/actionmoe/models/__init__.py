"""Models: backbone, motion dynamics module, mixture-of-experts head, recognizer.

Never imports ``actionmoe.data``.
"""
