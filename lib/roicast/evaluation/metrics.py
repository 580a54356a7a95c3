"""Forecast quality measures, computed the same way for the network and every baseline.

R² follows the guide: scikit-learn's `r2_score` on (days × assets), i.e. the mean of the
per-asset R² values. Skill and headroom put an error beside persistence and the ceiling.
"""

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² (mean over assets) of forecasts shaped (days, assets)."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    if actual.shape != predicted.shape:
        raise ValueError(f"actual {actual.shape} and predicted {predicted.shape} differ in shape")
    return {
        "mae": float(mean_absolute_error(actual, predicted)),
        "rmse": float(np.sqrt(mean_squared_error(actual, predicted))),
        "r2": float(r2_score(actual, predicted)),
    }


def skill_score(mse: float, reference_mse: float) -> float:
    """1 - MSE / reference MSE: positive when the forecast beats the reference."""
    return float(1.0 - mse / reference_mse) if reference_mse > 0 else float("nan")


def headroom_share(mse: float, persistence_mse: float, ceiling_mse: float) -> float:
    """Share of the gap between persistence and the ceiling that a forecast closes.

    0 is persistence, 1 is the ceiling; above 1 would need foresight of tomorrow's return.
    """
    gap = persistence_mse - ceiling_mse
    return float((persistence_mse - mse) / gap) if gap > 0 else float("nan")


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall (of 'up') and ROC AUC over every day and asset."""
    labels = np.asarray(labels).reshape(-1).astype(int)
    probabilities = np.asarray(probabilities, float).reshape(-1)
    predicted = (probabilities >= 0.5).astype(int)
    both_classes = np.unique(labels).size == 2
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both_classes else float("nan"),
    }
