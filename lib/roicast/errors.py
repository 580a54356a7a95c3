"""One exception family for every error a user can cause.

The runner catches `RoicastError` and prints its message alone; anything else is a bug
and keeps its traceback. An OS-level failure the user can fix (a full disk, a folder without
permission, a read-only one) becomes a `StorageError` through `storage_error`.
"""

import errno

_FREE = "free space there, or set ROICAST_WORKDIR to a folder on another disk"
_WRITABLE = "make it writable for this user, or set ROICAST_WORKDIR to a folder that is"
STORAGE_ADVICE = {errno.ENOSPC: _FREE, errno.EDQUOT: _FREE, errno.EFBIG: _FREE, errno.EACCES: _WRITABLE,
                  errno.EPERM: _WRITABLE, errno.EROFS: "set ROICAST_WORKDIR to a writable folder"}


class RoicastError(Exception):
    """An error the user can fix; the message says what was wrong and what to do."""


class ParameterError(RoicastError, ValueError):
    """A run parameter is unknown, mistyped or impossible."""


class DataError(RoicastError):
    """Input data is missing, empty, too short or malformed."""


class DownloadError(DataError):
    """A download returned nothing or failed, and no cache can stand in."""


class MissingArtefactError(RoicastError, FileNotFoundError):
    """A notebook needs a file that an earlier step of the chain has not written yet."""


class ContractError(RoicastError):
    """A step opened an artefact that its entry in `roicast.runs.store.STEPS` does not declare."""


class RunExistsError(RoicastError):
    """A full run was asked for on an id that already holds a run (use --overwrite or --resume)."""


class RunInUseError(RoicastError):
    """Another process is writing this run."""


class RunInterrupted(RoicastError):
    """Ctrl-C or SIGTERM stopped the run; what had finished is kept."""


class NotebookError(RoicastError):
    """A notebook of the chain failed; the message names the notebook, cell and error."""


class StorageError(RoicastError):
    """The disk refused a file: no space left, permission denied or a read-only folder."""


def storage_error(exc: OSError) -> StorageError | None:
    """`exc` in one line naming the path, the cause and what to do, or None for an OSError the
    user cannot fix that way (a bug keeps its traceback)."""
    advice = STORAGE_ADVICE.get(exc.errno)
    if advice is None:
        return None
    return StorageError(f"{exc.filename or 'a file'}: {exc.strerror}; {advice}.")


class RoicastWarning(UserWarning):
    """Something in the data was repaired or dropped; the run goes on."""
