"""Kernels and members' lanes forked from the preloaded server (`compute.preloaded`) behave as
processes started on their own: they answer, take interrupts, write to their logs, and go when
stopped or when the process that started them is killed; where the environment that the server
imported with has changed, nothing is forked from it."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyter_core.utils import run_sync

from roicast import paths
from roicast.compute import cluster, members_ahead, preloaded
from roicast.runs import runner
from roicast.runs.forked_kernels import ForkedProvisioner
from tests import chain

pytestmark = pytest.mark.notebooks


def test_an_import_cell_names_every_module_it_imports():
    cell = "import keras\n\nfrom roicast import plots\nfrom roicast.models import hybrid, training\n"
    assert preloaded.imported_modules(cell) == ["keras", "roicast", "roicast.plots", "roicast.models",
                                               "roicast.models.hybrid", "roicast.models.training"]


def test_a_script_that_forks_without_a_main_guard_runs_once(tmp_path):
    """multiprocessing would import the caller's script again in the new process; a script that
    starts a chain at its top level would start it there again."""
    script = tmp_path / "unguarded.py"
    script.write_text(f"""
from pathlib import Path
from roicast.compute import preloaded
with open({str(tmp_path / "runs")!r}, "a") as runs:
    print("ran", file=runs)
preloaded.start(["json"], Path({str(tmp_path / "server.log")!r}))
assert preloaded.fork(print, ("forked",), Path({str(tmp_path / "child.log")!r})).wait(60) == 0
""")
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    assert (tmp_path / "runs").read_text() == "ran\n"
    assert (tmp_path / "child.log").read_text() == "forked\n"


def test_a_caller_that_exits_with_a_forked_process_running_exits_and_leaves_nothing(tmp_path):
    """multiprocessing waits at exit for every child still running, and a forked process waits
    for its caller to go: a kernel left running (an interrupt while it started) hung the run."""
    script = tmp_path / "leaves_one.py"
    script.write_text(f"""
import time
from pathlib import Path
from roicast.compute import preloaded
preloaded.start(["json"], Path({str(tmp_path / "server.log")!r}))
forked = preloaded.fork(time.sleep, (600,), Path({str(tmp_path / "child.log")!r}))
Path({str(tmp_path / "pid")!r}).write_text(str(forked.pid))
""")
    subprocess.run([sys.executable, str(script)], check=True, timeout=60)
    assert _gone(int((tmp_path / "pid").read_text()), seconds=5)


def test_a_server_still_importing_is_killed_when_replaced_or_when_its_caller_exits(tmp_path):
    """Told to stop, a server would first finish its imports: seconds of a core for nothing
    (TensorFlow's) after a run that failed in 01 or 02, and as long again before a restart."""
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(600)\n")
    script = tmp_path / "replaces_one.py"
    script.write_text(f"""
import os
from pathlib import Path
from roicast.compute import preloaded
log = Path({str(tmp_path / "server.log")!r})
preloaded.start(["slow_import"], log)
first = preloaded.server_pid()
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # a changed import-time environment: a new server
preloaded.start(["slow_import"], log)
Path({str(tmp_path / "pids")!r}).write_text(f"{{first}} {{preloaded.server_pid()}}")
""")
    subprocess.run([sys.executable, str(script)], check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(tmp_path)})
    first, second = map(int, (tmp_path / "pids").read_text().split())
    assert first != second and _gone(first, seconds=5) and _gone(second, seconds=5)


def test_a_kernel_whose_shutdown_fails_is_killed():
    """An interrupt can leave the event loop so that the kernel's shutdown raises: the kernel's
    process is killed all the same, not left running beside the caller."""

    class Manager:
        transport = "tcp"
        provisioner = SimpleNamespace(process=subprocess.Popen(["sleep", "60"]))

        async def shutdown_kernel(self, now: bool) -> None:
            raise RuntimeError("the loop an interrupt left behind")

    manager = Manager()
    runner.WarmKernels.stop(manager)
    assert manager.provisioner.process.poll() is not None


def _gone(pid: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The server as a run starts it (the runner sets the backend)."""
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    runner.start_preloading(tmp_path)
    return preloaded.server_pid()


def test_a_forked_kernel_answers_takes_an_interrupt_logs_to_its_file_and_goes_when_stopped(server, tmp_path):
    kernels = runner.WarmKernels(tmp_path)
    manager = kernels.take("04_evaluate")
    try:
        assert isinstance(manager.provisioner, ForkedProvisioner)
        client = manager.blocking_client()
        client.start_channels()
        client.wait_for_ready(timeout=120)  # iopub subscribed: no output published before it
        code = ("import os, sys\nprint('to the log', file=sys.__stderr__, flush=True)\n"
                f"assert os.getppid() == {server} and os.getpgid(0) == os.getpid()")
        assert client.execute_interactive(code, timeout=120)["content"]["status"] == "ok"
        sleeping = client.execute("import time; time.sleep(60)")
        time.sleep(1)
        run_sync(manager.interrupt_kernel)()
        reply = client.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == sleeping
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        client.stop_channels()
        pid = manager.provisioner.pid
    finally:
        runner.WarmKernels.stop(manager)
    assert _gone(pid)
    assert "to the log" in (tmp_path / "04_evaluate.kernel.log").read_text()


def _provisioner(nb: str, folder: Path, fork_any: bool = False):
    manager = runner.kernel_manager(nb, folder / f"{nb}.kernel.log", fork_any)
    runner.WarmKernels.stop(manager)  # never started: its sockets' folder
    return manager.provisioner


def test_a_changed_import_time_environment_forks_nothing_until_the_server_restarts(server, tmp_path,
                                                                                monkeypatch):
    assert isinstance(_provisioner("05_ensemble", tmp_path), ForkedProvisioner)
    assert _provisioner("02_preprocess", tmp_path) is None, "a kernel that imports no TensorFlow starts alone"
    assert isinstance(_provisioner("02_preprocess", tmp_path, fork_any=True), ForkedProvisioner), \
        "unless the server was ready before the run began"

    stray = preloaded.fork(time.sleep, (600,), tmp_path / "stray.log")  # never stopped by its caller
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert not preloaded.usable() and _provisioner("05_ensemble", tmp_path) is None
    assert _provisioner("02_preprocess", tmp_path, fork_any=True) is None
    light = ["json"]  # what the new server imports is not the point: JAX's and Keras's would cost 5 s
    preloaded.start(light, tmp_path / "preloaded.log")
    assert preloaded.usable() and preloaded.server_pid() != server and _gone(server, 5)
    assert stray.poll() is not None, "the old server waited for it: it was killed, not waited for"

    monkeypatch.setenv("KERAS_BACKEND", "torch")  # whose import asks CUDA for devices: never forked
    preloaded.start(light, tmp_path / "preloaded.log")
    assert not preloaded.usable() and _provisioner("05_ensemble", tmp_path) is None


def test_a_run_forks_01s_kernel_from_a_server_a_run_before_it_started(server, workdir, monkeypatch):
    """A run after one that started the server (here: the fixture) forks 01's kernel too, and the
    notebook runs in it as in a kernel of its own."""
    forked = []
    original = runner.kernel_manager

    def recorded(nb: str, log_path: Path, fork_any: bool = False):
        manager = original(nb, log_path, fork_any)
        forked.append((nb, isinstance(manager.provisioner, ForkedProvisioner)))
        return manager

    monkeypatch.setattr(runner, "kernel_manager", recorded)
    params = runner.resolve_params(dict(chain.TINY), "after", ["01"])
    assert runner.run_chain(params, only=["01"], log=lambda line: None).status == "succeeded"
    assert forked == [("01_collect", True)]
    assert (paths.run_dir("after") / "prices.parquet").exists()


def _writing_into(folder: Path) -> list[int]:
    """Processes whose stderr is a file in `folder`: kernels, lanes and the server of a run."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            target = os.readlink(f"/proc/{pid}/fd/2")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(int(pid))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds processes in /proc")
def test_a_killed_run_leaves_no_kernel_lane_or_server_behind(tiny_chain, workdir, monkeypatch):
    chain.copy_into(tiny_chain[0], workdir)
    shutil.copytree(paths.run_dir(chain.RUN_ID), paths.run_dir("killed"))
    monkeypatch.setenv(cluster.CORES_ENV, "2")  # members are trained ahead on two cores or more
    started = paths.run_dir("killed") / ".work" / "members-ahead" / members_ahead.started_file("up")
    # What only the killed process would have removed (its kernels' sockets, multiprocessing's
    # folder) goes to a folder of this test's; short, so that the kernels still use Unix sockets.
    temporary = tempfile.mkdtemp(prefix="roicast-test-")
    try:
        child = subprocess.Popen([sys.executable, "-m", "roicast", "run", "--only", "03,04,05",
                                  "--run-id", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "TMPDIR": temporary})
        deadline = time.monotonic() + 120
        while len(_writing_into(workdir)) < 4 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
        assert started.exists() and len(_writing_into(workdir)) >= 4, "a server, two kernels, a lane"
        child.send_signal(signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + 20
        while _writing_into(workdir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _writing_into(workdir) == []
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
