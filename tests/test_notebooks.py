"""The notebooks in ``notebooks/`` run from top to bottom, and what they print is sane.

The committed source of each notebook is a jupytext percent-format ``.py`` file (paired with ``.ipynb`` in its
header, so Jupyter with jupytext saves both; ``.ipynb`` files are not committed). Each is read with jupytext
and executed by nbclient in a fresh kernel of this interpreter: the kernel spec is written to a temporary
Jupyter path, so nothing depends on a registered ``python3`` kernel or on which ``python`` is on PATH.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the docs extra is not installed: pip install -e .[docs]")
nbclient = pytest.importorskip("nbclient", reason="the docs extra is not installed: pip install -e .[docs]")
pytest.importorskip("ipykernel", reason="the docs extra is not installed: pip install -e .[docs]")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
KERNEL = "pysciml-tests"

# per notebook: (regular expression on its printed output, upper bound on the number it captures)
CHECKS = {
    "quickstart.py": [(r"max relative error vs reference: (\S+)", 1e-5),
                      (r"max relative difference of the adjoint gradient: (\S+)", 1e-4)],
    "neural_ode.py": [(r"relative error of the trained model: (\S+)", 0.15)],
    "sinode.py": [(r"test relative error \(IMEX, dt = 0.1\): (\S+)", 0.3)],
}


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A kernel spec for this interpreter in a temporary Jupyter data directory."""
    share = tmp_path_factory.mktemp("jupyter")
    spec = share / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "pysciml tests",
                                                  "language": "python"}), encoding="utf-8")
    # one torch thread: the notebooks' tensors are small, and with other jobs on the machine (tests run in
    # parallel) multi-threaded kernels slowed them down tenfold here
    return {"JUPYTER_PATH": str(share), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "OMP_NUM_THREADS": "1"}


def test_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= set(CHECKS), [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_canonical_percent_format(path: Path) -> None:
    """A jupytext percent file that jupytext would write back unchanged, so diffs stay clean."""
    text = path.read_text(encoding="utf-8")
    nb = jupytext.reads(text, fmt="py:percent")
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")

    def normal(s: str) -> str:
        return re.sub(r"jupytext_version: \S+", "jupytext_version: X", s)

    assert normal(jupytext.writes(nb, fmt="py:percent")) == normal(text)


@pytest.mark.heavy
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, kernel_env: dict[str, str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in kernel_env.items():
        monkeypatch.setenv(key, value)
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and the traceback, if a cell fails
    printed = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                      for out in cell.outputs if out.output_type == "stream")
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors
    for pattern, bound in CHECKS.get(path.name, []):
        match = re.search(pattern, printed)
        assert match is not None, f"{path.name} did not print {pattern!r}:\n{printed}"
        value = float(match.group(1))
        assert 0 <= value < bound, f"{path.name}: {match.group(0)} (bound {bound})"
