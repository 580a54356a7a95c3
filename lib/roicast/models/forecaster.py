"""One family for everything that forecasts: the network, its ensemble and every baseline.

A `Forecaster` is fitted on some samples of a `Dataset` and predicts the scaled target of
others, (len(indices), n_assets). The registered ones (`register`) are the models every step
scores beside the network: 04 and its walk-forward folds fit and score each one that applies
to the run's dataset (`for_dataset`), and 06 forecasts with those that say `in_forecast`. A new
model is one class with `@register` in one file; a run's `model_plugins` names such files that
live outside roicast (`load_plugins`).
"""

import hashlib
import importlib.util
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from roicast.errors import ParameterError
from roicast.features.dataset import Dataset


class Forecaster(ABC):
    """Fit on some samples, predict the scaled target of others.

    Class attributes say where a registered forecaster takes part: `name` (its name in every
    table), `in_forecast` (06 forecasts the days after the data with it too) and
    `reads_target_series` (it reads the target's own past, which 06 has from the windows only
    when the target is one of the input features).
    """

    name: ClassVar[str]
    in_forecast: ClassVar[bool] = True
    reads_target_series: ClassVar[bool] = False

    @classmethod
    def applies_to(cls, dataset: Dataset) -> bool:
        """Whether the forecaster makes sense for the dataset's target (all of them, unless it says)."""
        return True

    @classmethod
    def create(cls, scalers: dict) -> "Forecaster":
        """A new, unfitted instance for a run with these scalers."""
        return cls()

    def fit(self, dataset: Dataset, indices: np.ndarray) -> "Forecaster":
        """Learn from the samples `indices` (and nothing after them) of `dataset`; nothing by default."""
        return self

    @abstractmethod
    def predict(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        """The scaled target of each sample in `indices`: shape (len(indices), n_assets)."""


REGISTRY: dict[str, type[Forecaster]] = {}  # name -> class, in the order of registration


def register(cls: type[Forecaster]) -> type[Forecaster]:
    """Class decorator: `cls` is scored by 04 and walk-forward, and forecasts in 06 (`in_forecast`)."""
    known = REGISTRY.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ParameterError(f"Two forecasters are named '{cls.name}': {known.__qualname__} and "
                             f"{cls.__qualname__} (in {cls.__module__}); rename one.")
    REGISTRY[cls.name] = cls
    return cls


def load_plugins(files: list[str] | tuple[str, ...]) -> None:
    """Import each Python file of `files` once, so that the forecasters it registers join the family."""
    for file in files:
        path = Path(file).resolve()
        module_name = f"roicast_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if module_name in sys.modules:
            continue
        if not path.is_file():
            raise ParameterError(f"model_plugins: {file} is not a file.")
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[module_name]
            raise


def for_dataset(dataset: Dataset, scalers: dict, plugins: list[str] | tuple[str, ...] = (),
                in_forecast: bool = False) -> dict[str, Forecaster]:
    """A new instance of every registered forecaster that applies to the dataset, by name
    (with `in_forecast`, only those 06 forecasts with); `plugins` are loaded first."""
    from roicast.models import baselines  # noqa: F401  (registers roicast's own)

    load_plugins(plugins)
    return {name: cls.create(scalers) for name, cls in REGISTRY.items()
            if cls.applies_to(dataset) and (cls.in_forecast or not in_forecast)}


def fit_predict(forecasters: dict[str, Forecaster], dataset: Dataset, fit_on: np.ndarray,
                indices: np.ndarray) -> dict[str, np.ndarray]:
    """Each forecaster fitted on `fit_on` and its forecasts for `indices`, by name."""
    return {name: forecaster.fit(dataset, fit_on).predict(dataset, indices)
            for name, forecaster in forecasters.items()}
