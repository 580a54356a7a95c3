"""Shared fixtures: a private work folder for every test, and small real price tables."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from filelock import FileLock

from roicast import paths

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch):
    """Runs, cache and reports go to a temporary folder, never into the repository."""
    monkeypatch.setenv("ROICAST_WORKDIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def sample_prices() -> pd.DataFrame:
    """The bundled S&P 500 prices, 2020-06 to 2022-12 (about 630 days, 20 assets)."""
    frame = pd.read_csv(paths.SAMPLE_PRICES, index_col=0, parse_dates=True)
    frame.index.name = "date"
    return frame.loc["2020-06-28":]


@pytest.fixture
def small_prices(sample_prices) -> pd.DataFrame:
    """Four assets, about 400 days: enough for short windows."""
    return sample_prices[["AAPL", "JPM", "KO", "XOM"]].iloc[-400:].copy()


def random_walk_prices(n_days: int = 300, n_assets: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0, 0.01, size=(n_days, n_assets))
    prices = 100 * np.exp(np.cumsum(returns, axis=0))
    dates = pd.bdate_range("2020-01-01", periods=n_days, name="date")
    return pd.DataFrame(prices, index=dates, columns=[f"A{i}" for i in range(n_assets)])


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory) -> tuple[Path, dict]:
    """The tiny chain (tests/chain.py), built once per pytest run and shared by the xdist
    workers (their temporary folders share a parent); its work folder and outcome. Read only:
    tests take a copy (`tiny_copy`)."""
    from tests import chain

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    with FileLock(str(shared / "tiny-chain.lock")):
        outcome = chain.build(shared / "tiny-chain")
    if outcome["status"] != "succeeded":
        pytest.fail(f"the tiny chain did not succeed: {outcome}")
    return shared / "tiny-chain", outcome
