"""One exception family for every error a user can cause.

The runner catches `RoicastError` and prints its message alone; anything else is a bug
and keeps its traceback.
"""


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


class RunExistsError(RoicastError):
    """A full run was asked for on an id that already holds a run (use --overwrite or --resume)."""


class RunInUseError(RoicastError):
    """Another process is writing this run."""


class RunInterrupted(RoicastError):
    """Ctrl-C or SIGTERM stopped the run; what had finished is kept."""


class NotebookError(RoicastError):
    """A notebook of the chain failed; the message names the notebook, cell and error."""


class RoicastWarning(UserWarning):
    """Something in the data was repaired or dropped; the run goes on."""
