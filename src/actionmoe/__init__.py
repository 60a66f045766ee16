"""actionmoe: human action recognition in video with R(2+1)D-18, motion dynamics and a mixture of experts."""

__version__ = "0.1.0"
