"""The year-by-year study's scores: does any forecast know tomorrow's own return, year after year?

A smoothed target is mostly known the day before, so its R² flatters every predictor; the
question that matters is the one part not yet known, tomorrow's raw return. Each fold (a test
year) scores the network, the shared ridge, persistence and the training mean on it with
`evaluate.tomorrow_scores`, as `evaluate.unknown_part` does: a smoothed forecast implies the
return w·forecast − (the w − 1 known returns); persistence says yesterday's raw return, the
training mean each asset's mean.
Across years, each year is one observation: the mean of the yearly rank ICs and its t-statistic
over years, so that neither a single lucky year nor the days' cross-correlation inflates it.
"""

import numpy as np
import pandas as pd
from scipy import stats

from roicast.evaluation.evaluate import implied_return_pct, tomorrow_scores
from roicast.evaluation.significance import binomial_direction_test, information_coefficient
from roicast.features.dataset import Dataset
from roicast.features.preprocess import to_roi_pct

PREDICTORS = ("hybrid", "ridge", "persistence", "train_mean")
SPACE = "return"  # the walk-forward records' space of tomorrow's raw return
TARGET_IC, TARGET_T = 0.02, 2.0  # the moonshot: a network IC of 0.02 that holds across years
BAND_Z = stats.norm.ppf(0.975)  # a 95 % band around a year's mean daily IC


def raw_return_forecasts(dataset: Dataset, scalers: dict, forecasts: dict[str, np.ndarray],
                         indices: np.ndarray) -> dict[str, np.ndarray]:
    """Each predictor's forecast of tomorrow's raw return in percent (empty unless horizon is 1).

    The network's and the ridge's are `evaluate.implied_return_pct`; persistence is yesterday's
    raw return and the training mean each asset's mean return on the training days.
    """
    if dataset.horizon != 1 or dataset.target_of == "sum":
        return {}
    indices, raw = np.asarray(indices), dataset.raw_pct
    result = {name: implied_return_pct(dataset, to_roi_pct(forecasts[name], scalers), indices)
              for name in ("hybrid", "ridge") if name in forecasts}
    result["persistence"] = raw[indices - 1]
    mean = raw[dataset.train_idx].mean(axis=0)
    result["train_mean"] = np.broadcast_to(mean, (len(indices), raw.shape[1])).copy()
    return result


def raw_return_scores(actual: np.ndarray, predicted: np.ndarray, train_raw: np.ndarray) -> dict[str, float]:
    """`evaluate.tomorrow_scores` (R² against the training mean, rank IC, direction beside the
    majority class, Diebold–Mariano), flat, with the daily IC's sd and days for a band and
    `n` (days × assets) so that years can be pooled for one binomial test.

    The majority class is each asset's more frequent sign on its training days.
    """
    majority = (train_raw > 0).mean(axis=0) >= 0.5
    majority_share = float(np.mean((actual > 0) == majority))
    scores = tomorrow_scores(actual, predicted, train_raw.mean(axis=0), majority_share)
    dm = scores.pop("dm_vs_train_mean")
    ic = information_coefficient(predicted, actual)
    return {**scores, "dm_vs_train_mean": dm["statistic"], "p_dm_vs_train_mean": dm["p_value"],
            "ic_sd": ic["std"], "ic_days": ic["n_days"], "n": int(actual.size)}


def fold_scores(dataset: Dataset, scalers: dict, forecasts: dict[str, np.ndarray],
                indices: np.ndarray) -> dict[str, dict[str, float]]:
    """scores[predictor] on tomorrow's raw return over one fold's test samples."""
    actual = dataset.target_rows(indices, "raw_pct")
    train_raw = dataset.target_rows(dataset.train_idx, "raw_pct")
    return {name: raw_return_scores(actual, predicted, train_raw)
            for name, predicted in raw_return_forecasts(dataset, scalers, forecasts, indices).items()}


def _metric(folds: pd.DataFrame, space: str, metric: str) -> pd.DataFrame:
    """One column per predictor, one row per fold (label), of `metric` in `space`."""
    chosen = folds[(folds["space"] == space) & (folds["metric"] == metric)]
    table = chosen.pivot(index="fold", columns="predictor", values="value")
    labels = chosen.drop_duplicates("fold").set_index("fold")["label"]
    return table.rename(index=labels)


def ic_by_year(folds: pd.DataFrame) -> pd.DataFrame:
    """Each fold's mean daily IC per predictor with its 95 % band (± z·sd/√days of that year)."""
    ic, sd, days = (_metric(folds, SPACE, m) for m in ("ic_mean", "ic_sd", "ic_days"))
    half = BAND_Z * sd / np.sqrt(days)
    frame = pd.DataFrame({"ic": ic.stack(), "low": (ic - half).stack(), "high": (ic + half).stack()})
    return frame.rename_axis(["label", "predictor"]).reset_index()


def _over_years(values: pd.Series) -> dict[str, float]:
    """Mean of yearly values, their sd, and t = mean / (sd / √years): each year one observation."""
    values = values.dropna()
    mean, sd = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    t = mean / (sd / np.sqrt(len(values))) if sd > 0 else float("nan")
    return {"mean": mean, "sd": sd, "t": t}


def _pooled_direction(folds: pd.DataFrame, predictor: str) -> dict[str, float]:
    """Direction accuracy over every test day of every year, with one binomial test."""
    n = _metric(folds, SPACE, "n")[predictor]
    correct = int(round(float((_metric(folds, SPACE, "direction_acc")[predictor] * n).sum())))
    majority = float((_metric(folds, SPACE, "majority_acc")[predictor] * n).sum() / n.sum())
    test = binomial_direction_test(correct, int(n.sum()), majority)
    return {"direction_acc": test["accuracy"], "majority_acc": majority,
            "p_direction_vs_majority": test["p_value"]}


def overall(folds: pd.DataFrame) -> pd.DataFrame:
    """One row per predictor: the study's scores over all years.

    IC: mean of the yearly means, its sd over years, t and the years with a positive IC; R²
    against the training mean: mean over years and the years above 0; direction: pooled with one
    binomial test; smoothed target: mean R² (scaled), beside the ceiling's.
    """
    ic, r2 = _metric(folds, SPACE, "ic_mean"), _metric(folds, SPACE, "r2_vs_train_mean")
    scaled = _metric(folds, "scaled", "r2")
    rows = {}
    for name in [p for p in PREDICTORS if p in ic.columns]:
        years = _over_years(ic[name])
        rows[name] = {"years": int(ic[name].notna().sum()), "ic_mean": years["mean"],
                      "ic_sd_years": years["sd"], "ic_t": years["t"],
                      "years_ic_positive": int((ic[name] > 0).sum()),
                      "r2_vs_train_mean": float(r2[name].mean()),
                      "years_r2_positive": int((r2[name] > 0).sum()),
                      **_pooled_direction(folds, name),
                      "r2_scaled": float(scaled[name].mean()) if name in scaled else float("nan"),
                      "ceiling_r2_scaled": float(scaled["ceiling"].mean()) if "ceiling" in scaled
                      else float("nan")}
    return pd.DataFrame.from_dict(rows, orient="index")


def paired_ic(folds: pd.DataFrame, model: str = "hybrid", other: str = "ridge") -> dict[str, float]:
    """Yearly IC of `model` minus `other`: mean, sd, t over years, and the years `model` is ahead."""
    ic = _metric(folds, SPACE, "ic_mean")
    difference = ic[model] - ic[other]
    return {**_over_years(difference), "years_ahead": int((difference > 0).sum()),
            "years": int(difference.notna().sum())}


def meets_target(row: pd.Series) -> bool:
    """The moonshot: mean yearly IC at least 0.02 with t at least 2 across years."""
    return bool(row["ic_mean"] >= TARGET_IC and row["ic_t"] >= TARGET_T)


def verdict(folds: pd.DataFrame, model: str = "hybrid") -> str:
    """What the numbers say, in words: skill on tomorrow's return or none, and the moonshot's fate."""
    table = overall(folds)
    if model not in table.index:
        return f"No forecast of tomorrow's return by {model} to judge."
    row, n_years = table.loc[model], int(table.loc[model, "years"])
    text = [f"Over {n_years} test year(s), {model}'s daily rank IC with tomorrow's return averages "
            f"{row['ic_mean']:+.4f}"]
    if n_years < 2:
        return text[0] + "; one year gives no spread across years, so no conclusion about skill."
    text[0] += (f" (t = {row['ic_t']:.2f} over years, positive in {int(row['years_ic_positive'])} of "
                f"{n_years}); its R² against the training mean is {row['r2_vs_train_mean']:+.4f} on "
                f"average (above 0 in {int(row['years_r2_positive'])} years) and its direction accuracy "
                f"{row['direction_acc']:.3f} against {row['majority_acc']:.3f} for the majority class "
                f"(p = {row['p_direction_vs_majority']:.3g}).")
    if row["ic_t"] >= TARGET_T and row["ic_mean"] > 0:
        text.append("Its IC is positive beyond chance across years"
                    + ("." if row["ic_mean"] >= TARGET_IC else f", but below the {TARGET_IC} target."))
    else:
        text.append("No evidence of skill on tomorrow's return: the IC does not hold across years.")
    if "ridge" in table.index:
        ridge, paired = table.loc["ridge"], paired_ic(folds, model, "ridge")
        text.append(f"The ridge's IC averages {ridge['ic_mean']:+.4f} (t = {ridge['ic_t']:.2f}); {model} "
                    f"is ahead of it in {paired['years_ahead']} of {paired['years']} years (paired t = "
                    f"{paired['t']:.2f}).")
        reached = meets_target(row) and not meets_target(ridge)
        text.append(f"Target (IC ≥ {TARGET_IC}, t ≥ {TARGET_T:g}, ridge not): "
                    + ("met." if reached else "not met."))
    return " ".join(text)
