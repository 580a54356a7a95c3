"""Read and write the files that carry state from one notebook to the next.

Every write goes to a temporary name in the same folder and is renamed into place, so
a run that fails halfway never leaves a half-written file behind; files get the usual
permissions (0644 under the common umask), as any other program's would. Which notebook
writes which file is kept in `roicast.runs.store`.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from roicast.errors import MissingArtefactError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    An OSError on the way names `path` (a full disk fails a write() that names no file, or
    names the temporary one), and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from colleagues
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno is not None and exc.filename in (None, tmp):
            exc.filename = str(path)
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        value = float(value)
        return value if np.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict) -> Path:
    """Write `data` as indented JSON; NaN and infinity become null, numpy types plain."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(data), indent=2) + "\n")
    return Path(path)


def copy_file(source: Path, target: Path) -> Path:
    """Copy a file so that readers of `target` see the old or the new file, never half of one."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)


def require(path: Path) -> Path:
    """Return `path` if it exists (`roicast.runs.store.open_step` has said which notebook makes it)."""
    path = Path(path)
    if not path.exists():
        raise MissingArtefactError(f"{path} does not exist.")
    return path


def read_json(path: Path) -> dict:
    return json.loads(require(path).read_text())


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp)
    return Path(path)


def read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(require(path))


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return Path(path)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(require(path), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
