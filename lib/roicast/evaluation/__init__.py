"""Evaluate (04): every predictor scored on the same windows, walk-forward folds and the yearly study."""
