"""Ensemble members: side by side in one model or as dask tasks, the same networks as trained alone."""

import os
import pickle
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from roicast.compute.cluster import (
    CORES_ENV,
    SCHEDULER_ENV,
    connect,
    cores,
    scheduler_address,
    workers_per_host,
)
from roicast.config import RunParams
from roicast.errors import RoicastError
from roicast.features.preprocess import build_dataset

keras = pytest.importorskip("keras")
from roicast.compute import cluster, member_process, units  # noqa: E402
from roicast.models import ensemble, hybrid, member_stack, training  # noqa: E402

TINY = dict(seq_len=20, lstm_units=[4, 2], attention_heads=1, attention_key_dim=2,
            dense_units=4, epochs=2, batch_size=64, n_members=4, seed=11)


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


@pytest.mark.slow
def test_a_member_trains_the_network_of_its_variant(dataset, tmp_path):
    member = ensemble.train_member(dataset, RunParams(**TINY), 5, tmp_path, {"dense_units": 6})
    saved = hybrid.load_model(tmp_path / "member_5.keras")
    assert saved.get_layer("dense").units == 6 and member.variant == {"dense_units": 6}


def test_workers_follow_the_cores_and_stay_home_with_one(monkeypatch):
    from roicast.models import backends

    monkeypatch.delenv(cluster.CORES_ENV, raising=False)
    monkeypatch.setattr(backends, "gpu_available", lambda: False)
    monkeypatch.setattr(cluster.os, "cpu_count", lambda: 2)
    assert cluster.local_workers(4) == 2
    assert cluster.local_workers(1) == 0
    monkeypatch.setattr(cluster.os, "cpu_count", lambda: 1)
    assert cluster.local_workers(4) == 0
    monkeypatch.setattr(cluster.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(backends, "gpu_available", lambda: True)
    assert cluster.local_workers(4) == 0
    monkeypatch.setattr(backends, "gpu_available", lambda: False)
    monkeypatch.setenv(cluster.CORES_ENV, "1")
    assert cluster.local_workers(4) == 0, "a share of one core trains at home"
    monkeypatch.setenv(cluster.CORES_ENV, "3")
    assert cluster.local_workers(4) == 3
    monkeypatch.setenv(cluster.CORES_ENV, "two")
    with pytest.raises(RoicastError, match="ROICAST_CORES='two'"):
        cluster.local_workers(4)


def test_a_local_cluster_never_has_more_workers_than_units(monkeypatch):
    """An idle worker only costs its start; shares made for the number of workers keep them all."""
    asked = []

    def connect(scheduler, workers):
        asked.append(workers)
        raise RuntimeError("no cluster needed to see its size")

    monkeypatch.setattr(units, "connect", connect)
    for workers, todo in ((4, {"a": (), "b": ()}), (2, {"a": ()}), (3, lambda n_workers: {})):
        with pytest.raises(RuntimeError, match="no cluster"):
            list(units.run_units("module:function", (), todo, None, workers))
    assert asked == [2, 1, 3]


def test_members_that_cannot_share_a_fit_train_in_stacks_of_their_own(dataset):
    params = RunParams(**TINY)
    variants = [{}, {"batch_size": 16}, {"dense_units": 6}, {"batch_size": 16, "learning_rate": 1e-4}]
    grouped = member_stack.stacks(ensemble.member_specs(dataset, params, [1, 2, 3, 4], variants))
    assert [[spec.seed for spec in stack] for stack in grouped] == [[1, 3], [2, 4]]


def test_a_member_in_a_stack_trains_on_its_lone_networks_loss():
    """A distribution network's members minimise the Gaussian NLL side by side too, not the MSE."""
    distribution = RunParams(**TINY, output="distribution", target="sum", horizon_days=10)
    assert isinstance(member_stack._loss(distribution, np.zeros((4, 3))), hybrid.GaussianNLL)
    assert member_stack._loss(RunParams(**TINY), np.zeros((4, 3))) == "mse"
    direction = member_stack._loss(RunParams(**TINY, task="direction"), np.array([[0.0], [1.0], [1.0]]))
    assert isinstance(direction, hybrid.WeightedBinaryCrossentropy)


@pytest.mark.slow
def test_members_side_by_side_and_on_two_workers_are_the_networks_trained_alone(dataset, tmp_path,
                                                                                monkeypatch):
    """Each its own shuffle, learning-rate cuts and early stop: the same weights to the last bit,
    whether side by side in one model (a GPU, one core) or in turn on a LocalCluster's workers."""
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    params = RunParams(**{**TINY, "n_members": 3, "epochs": 8, "lr_patience": 1,
                          "early_stopping_patience": 2, "batch_size": 32})
    first = training.train(dataset, params, tmp_path / "first", verbose=0)
    (tmp_path / "alone").mkdir()
    alone = [ensemble.train_member(dataset, params, seed, tmp_path / "alone") for seed in (12, 13)]
    assert len({m.epochs_run for m in alone}) > 1, "the members stop at different epochs"
    for workers in (0, 2):
        monkeypatch.setattr(ensemble, "local_workers", lambda n_tasks, workers=workers: workers)
        run_dir = tmp_path / f"workers-{workers}"
        members, run = ensemble.train_members(dataset, params, run_dir, first.model, first.info)
        assert [m.seed for m in members] == [11, 12, 13] and run["workers"] == workers
        for member, lone in zip(members[1:], alone, strict=True):
            np.testing.assert_array_equal(member.test, lone.test)
            assert (member.val_loss, member.epochs_run) == (lone.val_loss, lone.epochs_run)
            saved = hybrid.load_model(run_dir / "ensemble" / f"member_{member.seed}.keras")
            np.testing.assert_allclose(training.predict(saved, dataset, dataset.test_idx), member.test,
                                       rtol=1e-5, atol=1e-6)
        assert not [p for p in (run_dir / "ensemble").iterdir() if p.suffix != ".keras"]


@pytest.mark.slow
def test_members_trained_in_turn_share_one_traced_network(dataset, tmp_path, monkeypatch):
    compiled = []
    original = training.compile_model
    monkeypatch.setattr(training, "compile_model", lambda *a, **k: compiled.append(1) or original(*a, **k))
    params = RunParams(**{**TINY, "epochs": 1})
    members = ensemble.train_in_turn(dataset, params, [1, 2, 3], [{}, {}, {"dense_units": 6}], tmp_path)
    assert [m.seed for m in members] == [1, 2, 3]
    assert len(compiled) == 2, "one network for the two members of one shape, one for the variant"


@pytest.mark.slow
def test_workers_share_the_cores_and_a_failed_share_is_reported_beside_the_members_kept(dataset, tmp_path,
                                                                                        capsys):
    """One failure policy for members and walk-forward folds (`compute.units`): the others are
    kept. The members go to the cluster by its scheduler's address, as `roicast run --scheduler`
    sends them."""
    environment = dict(os.environ)
    params = RunParams(**{**TINY, "epochs": 1})
    with connect(None, 2) as client:
        assert dict(os.environ) == environment, "dask's nannies leave this process's environment as it was"
        shares = workers_per_host(client)
        threads = client.submit(member_process.threads_here, shares, pure=False).result()
        members = ensemble.train_seeds(dataset, params, [21, 22], tmp_path, 0, [{"dense_units": 0}, {}],
                                       client.scheduler.address)
    assert list(shares.values()) == [2] and threads == max(1, cores() // 2)
    assert [m.seed for m in members] == [22]
    assert "FAILED: Ensemble member 21 (dense_units=0) failed: ValidationError" in capsys.readouterr().out
    assert [p.name for p in tmp_path.glob("member_*")] == ["member_22.keras"]


def test_a_task_process_ends_with_its_output_flushed_and_no_teardown():
    """A dask task's process and a lane started on its own end as multiprocessing's own do: the
    interpreter's teardown after TensorFlow and a trained network cost about 1 s of a core."""
    script = ("import atexit, sys\n"
              "from roicast.compute.member_process import exit_without_teardown\n"
              "atexit.register(print, 'torn down')\n"
              "sys.stdout.write('flushed')\n"
              "exit_without_teardown(3)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (3, "flushed")


def test_a_member_that_fails_here_names_its_seed(dataset, tmp_path):
    with pytest.raises(RoicastError, match="Ensemble member 7 .* failed: ValidationError"):
        ensemble.train_seeds(dataset, RunParams(**TINY), [7], tmp_path, 0, [{"dense_units": 0}])


def test_an_unreachable_scheduler_from_the_runner_fails_within_seconds_naming_it(dataset, tmp_path,
                                                                                monkeypatch):
    """Within the timeout roicast gives dask (its own is 30 s), here one second."""
    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT", "1s")
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://127.0.0.1:9")
    with pytest.raises(RoicastError, match=r"tcp://127.0.0.1:9 within 1s"):
        ensemble.train_seeds(dataset, RunParams(**TINY), [12], tmp_path, 0, None, scheduler_address())


def test_members_trained_ahead_are_taken_only_for_the_same_data_and_parameters(tmp_path):
    from roicast.compute import members_ahead

    params = RunParams(**TINY)
    (tmp_path / "dataset.npz").write_bytes(b"the windows")
    assert members_ahead.take(tmp_path, params) is None, "nothing was started"
    here = members_ahead.folder(tmp_path)
    here.mkdir(parents=True)
    (here / members_ahead.started_file("up")).touch()
    assert members_ahead.take(tmp_path, params) is None, "the process left no members"
    members = [SimpleNamespace(seed=seed) for seed in (12, 13, 14)]
    made = {"key": members_ahead.key(tmp_path, params), "members": members[:2], "start": 10.0, "end": 13.0}
    (here / members_ahead.result_file("up")).write_bytes(pickle.dumps(made))
    assert members_ahead.take(tmp_path, params) == (members[:2], 3.0)
    (here / members_ahead.started_file("down")).touch()
    assert members_ahead.take(tmp_path, params) is None, "a lane started and left no members"
    down = {**made, "members": members[2:], "start": 11.0, "end": 15.0}
    (here / members_ahead.result_file("down")).write_bytes(pickle.dumps(down))
    assert members_ahead.take(tmp_path, params) == (members, 5.0), "both lanes' members, in seed order"
    assert members_ahead.take(tmp_path, params.model_copy(update={"dropout_lstm": 0.3})) is None
    assert members_ahead.take(tmp_path, params.model_copy(update={"forecast_days": 9})) is not None, \
        "06's parameters do not change the members"
    (tmp_path / "dataset.npz").write_bytes(b"other windows")
    assert members_ahead.take(tmp_path, params) is None


def test_members_are_trained_ahead_only_beside_03_on_two_cores(monkeypatch):
    from roicast.compute import members_ahead

    params = RunParams(**TINY)
    chain = ["03_train", "04_evaluate", "05_ensemble"]
    monkeypatch.setenv(CORES_ENV, "2")
    assert members_ahead.worthwhile(params, chain, None)
    assert not members_ahead.worthwhile(params, chain, "tcp://scheduler:8786")
    assert not members_ahead.worthwhile(params, chain[1:], None)
    assert not members_ahead.worthwhile(params.model_copy(update={"n_members": 1}), chain, None)
    monkeypatch.setenv(CORES_ENV, "1")
    assert not members_ahead.worthwhile(params, chain, None)
    assert not members_ahead.second_lane_worthwhile(params.model_copy(update={"n_members": 2}))
    assert members_ahead.second_lane_worthwhile(params.model_copy(update={"n_members": 3}))


def test_two_lanes_share_the_members_each_claimed_once_and_a_lane_stops_at_the_other_lanes(tmp_path,
                                                                                          monkeypatch):
    from roicast.compute import members_ahead

    assert members_ahead.claim(tmp_path, 14) and not members_ahead.claim(tmp_path, 14)
    trained = []
    monkeypatch.setattr(ensemble, "train_member", lambda data, params, seed, *a: trained.append(seed) or seed)
    params = RunParams(**TINY)
    up = ensemble.train_in_turn(None, params, [12, 13, 14, 15], [{}] * 4, tmp_path,
                                claim=lambda seed: members_ahead.claim(tmp_path, seed))
    assert up == trained == [12, 13], "14 was claimed by the other lane: the rest is the other lane's"


@pytest.mark.slow
def test_two_lanes_trained_ahead_give_every_member_once_each_the_network_trained_alone(dataset, tmp_path,
                                                                                     monkeypatch):
    """The runner's two background processes, the second started at once, one forked from the
    preloaded server as in a run, the other started on its own as where nothing is forked
    (Windows, PyTorch): between them every member, none twice, and each the member
    `train_member` gives alone."""

    from roicast.compute import members_ahead, preloaded
    from roicast.runs import runner, store
    from roicast.runs.artefacts import write_json

    params = RunParams(**{**TINY, "epochs": 1})
    dataset.save(tmp_path / store.DATASET)
    write_json(tmp_path / store.PARAMS, params.model_dump())
    runner.start_preloading(tmp_path)
    lanes = [members_ahead.start(tmp_path, members_ahead.LANES[0])]
    monkeypatch.setattr(preloaded, "usable", lambda: False)
    lanes.append(members_ahead.start(tmp_path, members_ahead.LANES[1]))
    assert isinstance(lanes[0], preloaded.ForkedProcess) and isinstance(lanes[1], subprocess.Popen)
    for name, lane in zip(members_ahead.LANES, lanes, strict=True):
        log = members_ahead.folder(tmp_path) / members_ahead.log_file(name)
        assert lane.wait(timeout=600) == 0, log.read_text()
    members, seconds = members_ahead.take(tmp_path, params)
    assert [m.seed for m in members] == [12, 13, 14] and seconds > 0
    made = [pickle.loads((members_ahead.folder(tmp_path) / members_ahead.result_file(lane)).read_bytes())
            for lane in members_ahead.LANES]
    assert sorted(m.seed for lane in made for m in lane["members"]) == [12, 13, 14], "no member twice"
    (tmp_path / "alone").mkdir()
    alone = ensemble.train_member(dataset, params, 14, tmp_path / "alone")
    np.testing.assert_array_equal(members[-1].test, alone.test)
