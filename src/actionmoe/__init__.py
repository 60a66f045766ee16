"""actionmoe: human action recognition in video with R(2+1)D-18, motion dynamics and a mixture of experts.

from actionmoe import Predictor
"""

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__"]


def __getattr__(name: str):
    """``actionmoe.Predictor`` without importing torch for ``import actionmoe`` alone."""
    if name == "Predictor":
        from actionmoe.predict.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'actionmoe' has no attribute {name!r}")
