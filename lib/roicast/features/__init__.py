"""Preprocess (02): the scaled daily series, their windows and the chronological split."""
