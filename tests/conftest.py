"""Shared fixtures: a private work folder for every test, and small real price tables."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from filelock import FileLock

# Each xdist worker gets its share of the cores, as roicast's ROICAST_CORES lets any process on a
# shared machine do: a test's notebooks then train in their kernel, with TensorFlow on that share,
# instead of each starting worker processes that fight the other test workers for the same cores.
# Set in the worker only, before roicast is imported (it sizes TensorFlow's threads from it): the
# workers inherit the controlling process's environment, where a share set would be the machine's,
# and so would the thread counts that roicast's import there derived from a ROICAST_CORES given.
_TEST_WORKERS = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
if _TEST_WORKERS:
    _machine = os.environ.get("ROICAST_CORES") or str(os.cpu_count() or 1)
    for _threads in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        if os.environ.get(_threads) == _machine:
            del os.environ[_threads]
    os.environ["ROICAST_CORES"] = str(max(1, int(_machine) // int(_TEST_WORKERS)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The backend a run sets for its kernels, set for the whole session: the preloaded server
# (`compute.preloaded`) serves only its own import-time environment, so tests that fork lanes
# outside a run would otherwise restart it, and the next run restart it again.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The tests' networks train for an epoch or two, so on JAX compiling their steps is most of the
# work: XLA's quickest compile took a JAX training from 17 to 11 s of CPU here. Runs themselves
# keep XLA's default (TensorFlow compiles nothing with XLA on a CPU).
os.environ.setdefault("XLA_FLAGS",
                      "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")

from roicast import paths  # noqa: E402


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


def four_assets(prices: pd.DataFrame) -> pd.DataFrame:
    """Four assets, about 400 days: enough for short windows."""
    return prices[["AAPL", "JPM", "KO", "XOM"]].iloc[-400:].copy()


@pytest.fixture
def small_prices(sample_prices) -> pd.DataFrame:
    """`four_assets` of the bundled prices, a copy of its own to change."""
    return four_assets(sample_prices)


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


# Longest first, from the seconds each test took when last recorded (`make test-durations`), so
# that two xdist workers finish together instead of one waiting on a long test started last.
# Tests that share a module-scoped fixture (a trained network, a model server) run as one unit on
# one worker (`--dist loadgroup`): interleaved with other modules' tests, pytest would tear the
# fixture down and build it again before each of them.
DURATIONS = Path(__file__).with_name("durations.json")
UNRECORDED_SECONDS = {"notebooks": 30.0, "slow": 10.0}  # a new test's guess until it is recorded
_recorded_now: dict[str, float] = {}


def pytest_addoption(parser):
    parser.addoption("--record-durations", action="store_true",
                     help=f"write each test's seconds to {DURATIONS.name}, the order the suite runs in")


def _test_id(nodeid: str) -> str:
    """The node id without the '@group' that `--dist loadgroup` appends."""
    return nodeid.split("@")[0]


def _expected_seconds(item, recorded: dict[str, float]) -> float:
    if _test_id(item.nodeid) in recorded:
        return recorded[_test_id(item.nodeid)]
    return max([UNRECORDED_SECONDS[m.name] for m in item.iter_markers() if m.name in UNRECORDED_SECONDS],
               default=0.1)


def _shares_a_module_fixture(item) -> bool:
    return any(definition.scope == "module"
               for definitions in item._fixtureinfo.name2fixturedefs.values() for definition in definitions)


def _needs_the_tiny_chain(unit: list) -> bool:
    return any("tiny_chain" in item.fixturenames for item in unit)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    recorded = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    units: dict[str, list] = {}
    for item in items:
        if _shares_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
            units.setdefault(item.module.__name__, []).append(item)
        else:
            units.setdefault(item.nodeid, []).append(item)
    order = sorted(units.values(), key=lambda unit: sum(_expected_seconds(i, recorded) for i in unit),
                   reverse=True)
    for unit in order:
        unit.sort(key=lambda item: _expected_seconds(item, recorded), reverse=True)
    # The tiny chain is built by the first test that needs it: start that one at once, and give
    # the other worker the longest unit that does not wait for the chain.
    builder = next((k for k, unit in enumerate(order) if _needs_the_tiny_chain(unit)), None)
    if builder is not None:
        order.insert(0, order.pop(builder))
        independent = next((k for k, unit in enumerate(order) if not _needs_the_tiny_chain(unit)), None)
        if independent is not None:
            order.insert(1, order.pop(independent))
    items[:] = [item for unit in order for item in unit]


def pytest_runtest_logreport(report):
    test = _test_id(report.nodeid)
    _recorded_now[test] = _recorded_now.get(test, 0.0) + report.duration


def pytest_sessionfinish(session):
    if session.config.getoption("--record-durations") and not hasattr(session.config, "workerinput"):
        DURATIONS.write_text(json.dumps({k: round(v, 1) for k, v in sorted(_recorded_now.items())},
                                        indent=0) + "\n")
