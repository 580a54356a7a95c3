"""roicast runs from a clone of its repository, never from a bare package install.

The notebooks, the bundled sample and the run folders live beside `lib/`, not inside the
package, so a regular `pip install .` (or a wheel) copies the library without them. The
runner calls `require_checkout` first, so such an install stops with one line saying what
to do instead of a traceback from deep inside papermill.
"""

from roicast import paths
from roicast.errors import RoicastError


def require_checkout() -> None:
    """Raise `RoicastError` unless the notebooks are where the library expects them."""
    if not paths.NOTEBOOKS_DIR.is_dir():
        raise RoicastError(
            f"roicast's notebooks are not installed: {paths.NOTEBOOKS_DIR} does not exist. roicast "
            "runs from a clone of its repository: clone it, then run `make run` there or install "
            "from the clone with `pip install -e .`.")
