"""Ensemble members: trained in worker processes, the same networks as trained here."""

import numpy as np
import pytest

from roicast.config import RunParams
from roicast.preprocess import build_dataset

keras = pytest.importorskip("keras")
from roicast import ensemble, models, training  # noqa: E402

TINY = dict(seq_len=20, lstm_units=[8, 4], attention_heads=1, attention_key_dim=4,
            dense_units=8, epochs=2, batch_size=64, n_members=4, seed=11)


@pytest.fixture
def dataset(small_prices):
    arrays, _, _ = build_dataset(small_prices, RunParams(**TINY))
    return arrays


def test_bootstrap_indices_are_training_windows_in_date_order():
    train = np.arange(60, 160)
    drawn = ensemble.bootstrap_indices(train, seed=3)
    assert len(drawn) == len(train) and np.all(np.diff(drawn) >= 0)
    assert set(drawn) < set(train), "a resample repeats some windows and leaves others out"


def test_members_after_the_first_cycle_through_the_variants():
    params = RunParams(**{**TINY, "n_members": 4, "member_variants": [{"dense_units": 6}, {}]})
    assert ensemble.member_variants(params) == [{}, {"dense_units": 6}, {}, {"dense_units": 6}]
    assert ensemble.member_variants(RunParams(**TINY)) == [{}] * 4
    assert ensemble.describe_variant({}) == "the run's network"


def test_a_member_trains_the_network_of_its_variant(dataset, tmp_path):
    member = ensemble.train_member(dataset, RunParams(**TINY), 5, tmp_path, {"dense_units": 6})
    saved = models.load_model(tmp_path / "member_5.keras")
    assert saved.get_layer("dense").units == 6 and member.variant == {"dense_units": 6}


def test_workers_follow_the_cores_and_stay_home_with_one(monkeypatch):
    monkeypatch.setattr(ensemble, "gpu_available", lambda: False)
    monkeypatch.setattr(ensemble.os, "cpu_count", lambda: 2)
    assert ensemble.parallel_workers(4) == 2
    assert ensemble.parallel_workers(1) == 0
    monkeypatch.setattr(ensemble.os, "cpu_count", lambda: 1)
    assert ensemble.parallel_workers(4) == 0
    monkeypatch.setattr(ensemble.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(ensemble, "gpu_available", lambda: True)
    assert ensemble.parallel_workers(4) == 0


def test_members_from_two_workers_for_three_seeds_are_saved_and_in_seed_order(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(ensemble.os, "cpu_count", lambda: 2)
    params = RunParams(**TINY)
    first = training.train(dataset, params, tmp_path / "first", verbose=0)
    members, run = ensemble.train_members(dataset, params, tmp_path, first.model, first.info)
    assert [m.seed for m in members] == [11, 12, 13, 14] and run["workers"] == 2
    for member in members[1:]:
        saved = models.load_model(tmp_path / "ensemble" / f"member_{member.seed}.keras")
        np.testing.assert_allclose(training.predict(saved, dataset, dataset["test_idx"]), member.test,
                                   rtol=1e-5, atol=1e-6)
        assert member.test.shape == (len(dataset["test_idx"]), len(dataset["assets"]))
    assert not np.allclose(members[1].test, members[2].test), "different seeds, different members"
    assert not [p for p in (tmp_path / "ensemble").iterdir() if p.suffix != ".keras"]
