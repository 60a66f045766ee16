"""``actionmoe serve``: the upload page and its JSON API on FastAPI + uvicorn, around a ``predict.Predictor``.

Uses the prediction wing's public seam only; never imports training.
"""
