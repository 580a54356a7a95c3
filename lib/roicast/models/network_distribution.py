"""The network's forecast distribution: from its location and scale per asset to a joint Gaussian.

A network trained with `output='distribution'` gives each asset a location and a scale of its
target, in the target's scaled units. Four steps make that a `distribution.Forecast`:

- the members of an ensemble are mixed (`mixture`: the mixture's mean and variance, by the law
  of total variance), so their disagreement widens the forecast;
- the assets' correlation comes from the training residuals standardised by the forecast scale,
  shrunk by scikit-learn's Ledoit–Wolf estimator (`residual_correlation`): the network forecasts
  each asset's margin, not their dependence;
- the target's scaler is inverted (`to_forecast`), so a 'sum' target (`target='sum'`,
  `horizon_days` H) gives the H-day log return the M6 scores use;
- the forecast is calibrated on the validation windows (`Calibration`, in log-return units):
  the location's spread across assets shrunk by what held-out returns bear out, and the scale
  mapped by a factor and a power. The network partly fits its training windows, so the scale it
  learns there is too small out of sample, and too spread: on 2018–2022 one factor alone left its
  90 % intervals covering 83 % of months where it forecast calm and 93 % where it forecast
  turmoil.

`YearlyNetwork` is a forecaster for `roicast.evaluation.m6.evaluate`: it retrains the network(s) once per
calendar year on the `train_years` before it, from the returns the evaluation hands it.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from sklearn.covariance import LedoitWolf

from roicast.config import RunParams
from roicast.errors import ParameterError
from roicast.features import preprocess
from roicast.features.dataset import Dataset
from roicast.features.windows import sample_indices, year_splits
from roicast.models import training
from roicast.models.distribution import Forecast
from roicast.runs.artefacts import atomic_path


def mixture(locations: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of an equal-weight mixture of Gaussians (members on axis 0):
    the mean of the members' means, and the mean of their variances plus the variance of their
    means."""
    locations, scales = np.asarray(locations, float), np.asarray(scales, float)
    mean = locations.mean(axis=0)
    variance = (scales**2).mean(axis=0) + locations.var(axis=0)
    return mean, np.sqrt(variance)


def residual_correlation(actual: np.ndarray, location: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The assets' correlation (assets × assets) of standardised residuals (samples × assets), by
    Ledoit–Wolf shrinkage of their covariance, rescaled to a unit diagonal."""
    residuals = (np.asarray(actual, float) - location) / scale
    covariance = LedoitWolf().fit(residuals).covariance_
    sd = np.sqrt(np.diag(covariance))
    return covariance / np.outer(sd, sd)


@dataclass(frozen=True)
class Calibration:
    """A correction of the network's forecasts (log-return units), fitted on held-out windows.

    `shrink` is the share of each location's deviation from the cross-sectional mean that is
    kept (the least-squares slope of held-out returns on it, within [0, 1]: a network without
    skill at the mean keeps none). The scale becomes `factor · reference · (scale / reference)^power`,
    `reference` the held-out scales' geometric mean: `power` below 1 pulls calm and volatile
    forecasts together, `factor` sets the overall width; both maximise the held-out Gaussian
    likelihood. The identity (all 1) leaves a forecast as it is.
    """

    shrink: float = 1.0
    factor: float = 1.0
    power: float = 1.0
    reference: float = 1.0

    POWERS = (0.0, 2.0)  # the search's bounds: from one scale for all to twice the spread

    @classmethod
    def fit(cls, actual: np.ndarray, location: np.ndarray, scale: np.ndarray) -> "Calibration":
        """The calibration of held-out samples (samples × assets, log units; never the test's)."""
        actual, location, scale = (np.asarray(a, float) for a in (actual, location, scale))
        deviation = location - location.mean(axis=1, keepdims=True)
        outcome = actual - actual.mean(axis=1, keepdims=True)
        spread = float(np.sum(deviation**2))
        shrink = float(np.clip(np.sum(deviation * outcome) / spread, 0.0, 1.0)) if spread > 0 else 0.0
        residual = actual - cls(shrink=shrink).location(location)
        reference = float(np.exp(np.mean(np.log(scale))))
        relative = np.log(scale / reference)

        def factor_at(power: float) -> float:
            return float(np.sqrt(np.mean((residual / reference) ** 2 / np.exp(2 * power * relative))))

        def negative_log_likelihood(power: float) -> float:
            return float(np.mean(power * relative) + np.log(factor_at(power)))

        if np.ptp(relative) == 0:  # one scale for every sample: no spread to correct
            return cls(shrink, factor_at(1.0), 1.0, reference)
        power = float(minimize_scalar(negative_log_likelihood, bounds=cls.POWERS, method="bounded").x)
        return cls(shrink, factor_at(power), power, reference)

    def location(self, location: np.ndarray) -> np.ndarray:
        centre = np.mean(location, axis=-1, keepdims=True)
        return centre + self.shrink * (location - centre)

    def scale(self, scale: np.ndarray) -> np.ndarray:
        return self.factor * self.reference * (np.asarray(scale, float) / self.reference) ** self.power


def in_log_units(location: np.ndarray, scale: np.ndarray, scalers: dict) -> tuple[np.ndarray, np.ndarray]:
    """Location and scale (… × assets) from the target's scaled units to log-return units; the
    target's scaler is affine per asset, so a scale maps by its slope."""
    n_assets = np.shape(location)[-1]
    intercept = preprocess.to_roi_pct(np.zeros((1, n_assets)), scalers)[0]
    slope = preprocess.to_roi_pct(np.ones((1, n_assets)), scalers)[0] - intercept
    location, scale = np.asarray(location, float), np.asarray(scale, float)
    return (intercept + slope * location) / 100, np.abs(slope) * scale / 100


def to_forecast(assets: list[str], location: np.ndarray, scale: np.ndarray, correlation: np.ndarray,
                scalers: dict, calibration: Calibration = Calibration()) -> Forecast:
    """A calibrated `Forecast` of the target in log-return units (not percent) from one window's
    location and scale in scaled units."""
    mean, sd = in_log_units(location, scale, scalers)
    sd = calibration.scale(sd)
    return Forecast(list(assets), calibration.location(mean), correlation * np.outer(sd, sd))


def calibration_on(actual: np.ndarray, location: np.ndarray, scale: np.ndarray,
                   scalers: dict) -> Calibration:
    """`Calibration.fit` on held-out samples given in scaled units (the target rows, the
    network's location and scale)."""
    blank = np.zeros_like(np.asarray(actual, float))
    return Calibration.fit(in_log_units(actual, blank, scalers)[0], *in_log_units(location, scale, scalers))


def prices_of(returns: pd.DataFrame) -> pd.DataFrame:
    """A price table (starting at 1) whose daily log returns are `returns` (dates × assets)."""
    first = returns.index[0] - pd.Timedelta(days=1)
    levels = np.exp(np.vstack([np.zeros((1, returns.shape[1])), np.cumsum(returns.to_numpy(), axis=0)]))
    return pd.DataFrame(levels, index=returns.index.insert(0, first), columns=returns.columns)


@dataclass(frozen=True)
class YearOutputs:
    """One yearly training's members on the windows it saw, in log-return units: the training
    windows (for the residual correlation) and the held-out ones (for the calibration), each
    as the day its window ends (`*_asof`), the realised targets (samples × assets) and every
    member's location and scale (members × samples × assets). Kept, so that a forecast can be
    calibrated again without training."""

    train_asof: np.ndarray
    train_actual: np.ndarray
    train_location: np.ndarray
    train_scale: np.ndarray
    val_asof: np.ndarray
    val_actual: np.ndarray
    val_location: np.ndarray
    val_scale: np.ndarray

    def correlation(self, chosen: slice) -> np.ndarray:
        """The residual correlation of the chosen members' mixture on the training windows."""
        return residual_correlation(self.train_actual, *mixture(self.train_location[chosen],
                                                                self.train_scale[chosen]))

    def calibration(self, chosen: slice) -> Calibration:
        """The chosen members' mixture calibrated on the held-out windows."""
        return Calibration.fit(self.val_actual, *mixture(self.val_location[chosen], self.val_scale[chosen]))


def view_forecast(assets: list[str], location: np.ndarray, scale: np.ndarray, correlation: np.ndarray,
                  calibration: Calibration) -> Forecast:
    """A calibrated `Forecast` from the members' locations and scales (members × assets, log units)."""
    mean, sd = mixture(location, scale)
    sd = calibration.scale(sd)
    return Forecast(list(assets), calibration.location(mean), correlation * np.outer(sd, sd))


class YearlyNetwork:
    """The distribution network as an m6 forecaster, retrained for each calendar year.

    Called with the daily log returns up to a period's eve (`asof`), it trains, on the first call
    in a new year, `members` networks (seeds seed, seed + 1, …) on the windows whose H-day target
    ends in the `train_years` calendar years before it (early-stopped on their last
    `val_fraction`), never on a day of that year. Every call then forecasts from the window that
    ends on `asof` and returns the members' mixture. `forecasts[view][asof]` keeps the
    forecasts of two views, each with the correlation of its own training residuals: the
    'mixture' (returned) and the 'first member' alone, so that both can be scored from one run
    (`m6.score_forecasts`). `years` and `outputs` keep what they were made from (`YearOutputs`,
    and each period's member locations and scales in log units): `save_outputs` writes them.
    """

    VIEWS = {"mixture": slice(None), "first member": slice(0, 1)}

    def __init__(self, params: RunParams, train_years: int = 5, members: int = 1, verbose: int = 0):
        if not params.distributional or params.target != "sum":
            raise ParameterError("YearlyNetwork needs output='distribution' and target='sum' (the "
                                 "H-day log return it forecasts)")
        self.params, self.train_years, self.members, self.verbose = params, train_years, members, verbose
        self.year: int | None = None
        self.forecasts: dict[str, dict[pd.Timestamp, Forecast]] = {view: {} for view in self.VIEWS}
        self.years: dict[int, YearOutputs] = {}
        self.outputs: dict[pd.Timestamp, tuple[np.ndarray, np.ndarray]] = {}
        self.fits: list[dict] = []
        self.networks = training.CompiledNetworks()  # one traced graph for every member and year

    def _history(self, returns: pd.DataFrame, year: int) -> pd.DataFrame:
        """The returns from a year before the training years (room for the first windows) on."""
        return returns.loc[f"{year - self.train_years - 1}-01-01":]

    def _fit(self, returns: pd.DataFrame, year: int) -> None:
        params = self.params
        prices = prices_of(self._history(returns, year))
        probe, _, _ = preprocess.build_dataset(prices, params)  # only for the samples' target dates
        samples = sample_indices(len(probe.features), probe.seq_len, probe.horizon)
        split = year_splits(samples, probe.target_rows(samples, "dates"), [year], params.val_fraction,
                            max(params.smooth_window, probe.horizon), self.train_years)[0]
        dataset, self.scalers, _ = preprocess.build_dataset(prices, params, split=split)
        self.assets = [str(a) for a in dataset.assets]
        self.weights, on_train, on_val = [], [], []
        with tempfile.TemporaryDirectory() as work:
            for k in range(self.members):
                network = training.Network(params, Path(work) / f"member_{k}", params.seed + k,
                                           self.verbose, self.networks)
                network.fit(dataset, dataset.train_idx)
                self.model = network.result.model
                self.weights.append(self.model.get_weights())
                on_train.append(in_log_units(*network.predict_distribution(dataset, dataset.train_idx),
                                             self.scalers))
                on_val.append(in_log_units(*network.predict_distribution(dataset, dataset.val_idx),
                                           self.scalers))
                info = network.result.info
                self.fits.append({"year": year, "member": k, "epochs_run": info["epochs_run"],
                                  "best_val_loss": info["best_val_loss"], "fit_seconds": info["fit_seconds"]})

        def seen(indices: np.ndarray, members: list) -> tuple:
            actual = in_log_units(dataset.target_rows(indices), np.zeros(1), self.scalers)[0]
            return dataset.dates[indices - 1], actual, *map(np.array, zip(*members, strict=True))

        outputs = YearOutputs(*seen(dataset.train_idx, on_train), *seen(dataset.val_idx, on_val))
        self.years[year] = outputs
        self.correlations = {view: outputs.correlation(chosen) for view, chosen in self.VIEWS.items()}
        self.calibration = {view: outputs.calibration(chosen) for view, chosen in self.VIEWS.items()}
        self.year = year

    def member_outputs(self, returns: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Each member's location and scale (members × assets, scaled units) for the window
        ending on the returns' last day."""
        latest = preprocess.series_until(prices_of(self._history(returns, self.year)), self.params,
                                         self.scalers)
        window = latest.features[-latest.seq_len:].reshape(1, latest.seq_len, -1)
        outputs = []
        for weights in self.weights:  # the members share one network (`training.CompiledNetworks`)
            self.model.set_weights(weights)
            outputs.append(keras.ops.convert_to_numpy(self.model(window, training=False))[0])
        outputs = np.array(outputs)
        half = outputs.shape[1] // 2
        return outputs[:, :half], outputs[:, half:]

    def __call__(self, history: pd.DataFrame, horizon_days: int) -> Forecast:
        if horizon_days != self.params.horizon_days:
            raise ParameterError(f"this network forecasts {self.params.horizon_days}-day returns, "
                                 f"not {horizon_days}-day ones: set horizon_days={horizon_days}")
        asof = history.index[-1]
        if asof.year != self.year:
            self._fit(history, asof.year)
        locations, scales = in_log_units(*self.member_outputs(history), self.scalers)
        self.outputs[asof] = locations, scales
        for view, chosen in self.VIEWS.items():
            self.forecasts[view][asof] = view_forecast(self.assets, locations[chosen], scales[chosen],
                                                       self.correlations[view], self.calibration[view])
        return self.forecasts["mixture"][asof]

    def save_outputs(self, path: Path) -> Path:
        """Every year's `YearOutputs` and every period's member outputs, as one npz (`load_outputs`)."""
        arrays = {f"year/{year}/{name}": value for year, outputs in self.years.items()
                  for name, value in vars(outputs).items()}
        for asof, (location, scale) in self.outputs.items():
            arrays[f"period/{asof.date()}/location"], arrays[f"period/{asof.date()}/scale"] = location, scale
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as file:
            np.savez_compressed(file, assets=np.array(self.assets), **arrays)
        return Path(path)


def load_outputs(path: Path) -> tuple[list[str], dict[int, YearOutputs],
                                      dict[pd.Timestamp, tuple[np.ndarray, np.ndarray]]]:
    """The assets, years and period outputs that `YearlyNetwork.save_outputs` wrote."""
    with np.load(path) as saved:
        years: dict[int, dict] = {}
        periods: dict[pd.Timestamp, dict] = {}
        for key in saved.files:
            kind, name, field_name = (key.split("/") + ["", ""])[:3]
            if kind == "year":
                years.setdefault(int(name), {})[field_name] = saved[key]
            elif kind == "period":
                periods.setdefault(pd.Timestamp(name), {})[field_name] = saved[key]
        assets = [str(a) for a in saved["assets"]]
    return (assets, {year: YearOutputs(**fields) for year, fields in sorted(years.items())},
            {asof: (fields["location"], fields["scale"]) for asof, fields in sorted(periods.items())})


def dataset_distribution(models: list[keras.Model], dataset: Dataset,
                         indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mixture's location and scale (scaled units) of several distribution networks (an
    ensemble's members) for some samples."""
    parts = [training.predict_distribution(model, dataset, indices) for model in models]
    return mixture([p[0] for p in parts], [p[1] for p in parts])
