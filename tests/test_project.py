"""The project's own hygiene: environment files in sync, notebooks clean and consistent."""

import ast
import os
import re
import subprocess
import sys
import tomllib

import nbformat
import pytest
import yaml

from roicast import paths
from roicast.config import RunParams

NOTEBOOKS = [paths.notebook_path(name) for name in paths.NOTEBOOKS]


def test_environment_yml_lists_the_same_requirements_as_pyproject():
    project = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((paths.REPO_ROOT / "environment.yml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert set(pip) - {"-e ."} == wanted
    assert "python=3.11" in env["dependencies"]


def _parameters_cell(notebook) -> dict:
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    values = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign), "the parameters cell holds assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_holds_literals_with_the_library_defaults(path):
    declared = _parameters_cell(nbformat.read(path, as_version=4))
    defaults = RunParams().model_dump()
    for name, value in declared.items():
        assert name in defaults, f"{path.stem} declares unknown parameter {name}"
        assert value == defaults[name], f"{path.stem}: {name}={value!r}, library default {defaults[name]!r}"


def test_every_parameter_is_declared_by_some_notebook():
    declared = set()
    for path in NOTEBOOKS:
        declared |= set(_parameters_cell(nbformat.read(path, as_version=4)))
    assert declared == set(RunParams.model_fields)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs_except_nbval_cells(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = "nbval-check-output" in cell.metadata.get("tags", [])
        if not kept:
            assert not cell.outputs, f"{path.stem}: stored output in a cell not kept for nbval"
            assert cell.execution_count is None


def test_readme_parameter_table_is_generated_from_the_code():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "update_readme", paths.REPO_ROOT / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (paths.REPO_ROOT / "README.md").read_text()
    assert module.parameter_table() in readme, "run scripts/update_readme.py"


def test_xdist_keeps_a_group_on_one_worker_and_gives_each_worker_its_share_of_the_cores(tmp_path):
    """`make test` runs the tests that share a module fixture as one xdist group (tests/conftest.py):
    with a pytest whose node ids xdist cannot tag, the groups would be silently ignored. Each
    worker trains on its share of the cores: given the machine's instead (a share set in the
    controlling process, whose environment the workers inherit), both workers' notebooks would
    start worker processes and threads that fight over the same cores."""
    (tmp_path / "test_grouped.py").write_text(
        "import pytest\npytestmark = pytest.mark.xdist_group('one')\n"
        + "".join(f"def test_{k}():\n    pass\n" for k in range(6)))
    (tmp_path / "test_share.py").write_text(
        "import os\ndef test_share():\n    print('cores', os.environ['ROICAST_CORES'],"
        " 'threads', os.environ['TF_NUM_INTRAOP_THREADS'])\n")
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # the suite's own setup\n")
    environment = {name: value for name, value in os.environ.items()  # as `ROICAST_CORES=4 make test`
                   if not name.startswith(("PYTEST_", "ROICAST_CORES", "TF_NUM_"))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
                           "-rP", "-p", "no:cacheprovider", str(tmp_path)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120,
                          env={**environment, "ROICAST_CORES": "4", "PYTHONPATH": str(paths.REPO_ROOT)})
    assert done.returncode == 0, done.stdout[-2000:]
    workers = re.findall(r"\[(gw\d+)\] \[ *\d+%\] PASSED test_grouped", done.stdout)
    assert len(workers) == 6 and len(set(workers)) == 1, done.stdout[-2000:]
    assert "cores 2 threads 2" in done.stdout, done.stdout[-2000:]  # half of the 4 given, each
