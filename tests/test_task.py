"""The task a run forecasts: one `Task` per name a user can write, and no module or notebook that
compares the name itself."""

import json
import re
import typing
from pathlib import Path

import pytest

from roicast import paths, task
from roicast.config import RunParams, validate_params
from roicast.errors import ParameterError

LIB = Path(task.__file__).parent
NAMES = "|".join(task.TASKS)
COMPARISONS = re.compile(  # task == "…", task.name != '…', task in ("…", …), "…" == anything
    rf"""task[\w.]*\s*(==|!=)\s*["']|task[\w.]*\s+(not\s+)?in\s+[(\[{{]\s*["']"""
    rf"""|["']({NAMES})["']\s*(==|!=)|(==|!=)\s*["']({NAMES})["']""")


def test_every_task_a_user_can_write_has_its_task():
    assert set(typing.get_args(RunParams.model_fields["task"].annotation)) == set(task.TASKS)


def test_a_runs_task_gives_its_defaults_and_its_parts():
    direction, regression = validate_params({"task": "direction"}), validate_params({})
    assert direction.task_spec is task.DIRECTION and regression.task_spec is task.REGRESSION
    assert (direction.resolved_learning_rate, direction.resolved_clipnorm) == (1e-4, 1.0)
    assert (regression.resolved_learning_rate, regression.resolved_clipnorm) == (1e-3, None)
    assert validate_params({"task": "direction", "clipnorm": 2.0}).resolved_clipnorm == 2.0
    assert task.Task.of("direction").headline == ("classification", "accuracy")


def test_an_unknown_task_is_a_one_line_error():
    with pytest.raises(ParameterError, match="task 'sentiment' is not one of regression, direction"):
        task.task_of("sentiment")


def _lines():
    for path in sorted(LIB.rglob("*.py")):
        yield from ((f"{path.name}:{n}", line) for n, line in enumerate(path.read_text().splitlines(), 1))
    for path in sorted(paths.notebook_path(nb) for nb in paths.NOTEBOOKS):
        cells = json.loads(path.read_text())["cells"]
        code = "".join("".join(c["source"]) + "\n" for c in cells if c["cell_type"] == "code")
        yield from ((f"{path.name}:{n}", line) for n, line in enumerate(code.splitlines(), 1))


def test_the_pattern_finds_a_comparison_of_the_task_as_a_string():
    for line in ('if params.task == "direction":', "x = task != 'regression'", 'if task in ("direction",):',
                 'if "regression" == self.task:', 'if params.task_spec.name == "direction":',
                 'if kind != "direction":'):
        assert COMPARISONS.search(line), line
    assert not COMPARISONS.search("for task in (REGRESSION, DIRECTION)")


def test_no_module_or_notebook_compares_the_task_as_a_string():
    found = [f"{where}: {line.strip()}" for where, line in _lines() if COMPARISONS.search(line)]
    assert found == [], "ask the run's Task (params.task_spec) instead:\n" + "\n".join(found)
