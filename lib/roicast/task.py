"""What a run forecasts, and everything that follows from it.

`RunParams.task` stays the string a user writes ('regression', 'direction'); every module asks
the `Task` it names (`RunParams.task_spec`, or `task_of(name)`) instead of comparing the string,
so a new task (say 'distribution') is one more entry in `TASKS` with its answers, not a search
for `task == ...` across the library.
"""

from dataclasses import dataclass

from roicast.errors import ParameterError


@dataclass(frozen=True)
class Task:
    """One kind of forecast and what the chain does differently for it."""

    name: str
    # The network outputs, per asset, the probability of an up day (its label chosen by
    # `direction_of`): a sigmoid head, a class-weighted binary cross-entropy, scored by accuracy
    # against the majority class, ranked in the backtest by probability - 0.5.
    classifies: bool
    # The network forecasts the run's scaled `target`: the `target` parameter, the decomposed
    # output and the ridge start of the highway apply; it is scored in both spaces beside the
    # baselines, with intervals, multi-step errors, the persistence bar on validation, the
    # ensemble, ridge and persistence in 06's forecast and its fan chart.
    forecasts_target: bool
    learning_rate: float  # AdamW's rate when `learning_rate` is unset
    clipnorm: float | None  # gradient clipping when `clipnorm` is unset
    batch_norm: bool  # batch normalisation after the dense layer
    headline: tuple[str, str]  # the (space, metric) that summarises a walk-forward fold

    @classmethod
    def of(cls, name: str) -> "Task":
        """The task named `name` (see `task_of`)."""
        return task_of(name)


REGRESSION = Task("regression", classifies=False, forecasts_target=True, learning_rate=1e-3,
                  clipnorm=None, batch_norm=False, headline=("scaled", "r2"))
DIRECTION = Task("direction", classifies=True, forecasts_target=False, learning_rate=1e-4,
                 clipnorm=1.0, batch_norm=True, headline=("classification", "accuracy"))
TASKS: dict[str, Task] = {task.name: task for task in (REGRESSION, DIRECTION)}


def task_of(name: str) -> Task:
    """The `Task` a run's `task` parameter names; a one-line error for an unknown one."""
    try:
        return TASKS[name]
    except KeyError:
        raise ParameterError(f"task '{name}' is not one of {', '.join(TASKS)}.") from None
