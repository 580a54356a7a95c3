"""roicast: forecast the daily return of many assets with a hybrid LSTM-attention network.

Importing the package is cheap: Keras and its backend (TensorFlow by default) are imported
only by the modules that train or load models (`models`, `training`, `ensemble`), so the
command line starts at once and KERAS_BACKEND can still be chosen after `import roicast`.

`keras.models.load_model` must nevertheless find roicast's own layer and loss
(SelfAttention, WeightedBinaryCrossentropy), which importing `roicast.models.hybrid` registers.
So `import roicast` has them registered as soon as Keras is there: at once if Keras is
already imported, else right after the first `import keras`, by a one-shot hook on
Python's import system. Importing `roicast.models.hybrid` here instead would make every
`import roicast` (the command line, the collect and preprocess kernels, sweep workers)
load TensorFlow: 14 s and 790 MB of memory instead of 0.1 s and 13 MB on a busy 2-core
machine, with the default backend fixed before anyone could choose another.
"""

import importlib
import importlib.abc
import importlib.util
import logging
import os
import sys

from roicast.errors import RoicastError

__version__ = "0.1.0"
__all__ = ["RoicastError", "__version__"]


class _ThenRegister(importlib.abc.Loader):
    """Keras's own loader, followed by the import of roicast.models.hybrid (which registers)."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        module.__spec__.loader = module.__loader__ = self.loader
        sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _KerasHook)]
        importlib.import_module("roicast.models.hybrid")


class _KerasHook(importlib.abc.MetaPathFinder):
    """Finds Keras as Python would and has roicast's classes registered once it is loaded.

    It stays until Keras is loaded, not merely looked for: TensorFlow, for one, asks for
    Keras's spec before it imports it.
    """

    def __init__(self) -> None:
        self.finding = False

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras" or self.finding:
            return None
        self.finding = True
        try:
            spec = importlib.util.find_spec("keras")
        finally:
            self.finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegister(spec.loader)
        return spec


def _register_with_keras() -> None:
    if "keras" in sys.modules:
        importlib.import_module("roicast.models.hybrid")
    elif not any(isinstance(finder, _KerasHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KerasHook())


def _logs_to_kernel_log() -> None:
    """In a notebook kernel that `roicast run` started, send Python's logging to the kernel's own
    stderr, which the runner writes to reports/<run>/<notebook>.kernel.log.

    TensorFlow, imported into an interactive shell whose logging nobody configured, adds its
    own handler and logs to stdout, which the runner passes on to the terminal line by line.
    With a handler on the root logger first, it adds none, and its warnings go to the log with
    every other library's. Run by hand in JupyterLab, a notebook still shows them.
    """
    if "ipykernel" not in sys.modules or logging.root.handlers:
        return
    from roicast.runs.store import LOCKED_RUN_ENV

    if os.environ.get(LOCKED_RUN_ENV):
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
        logging.root.addHandler(handler)


def _threads_follow_the_cores() -> None:
    """Where ROICAST_CORES gives this process a share of the machine (`cluster.cores`), size
    TensorFlow's thread pools to it: TensorFlow reads these variables when it starts, so they
    must be set before it is imported, which a notebook kernel does after `import roicast`."""
    share = os.environ.get("ROICAST_CORES", "")
    if share.isdigit() and int(share) >= 1:
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ.setdefault(name, share)


_threads_follow_the_cores()
_logs_to_kernel_log()
_register_with_keras()
