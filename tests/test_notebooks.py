"""The notebooks: stored clean with a tagged parameters cell, and each one runs under papermill at `smoke`."""

import ast
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from papermill.translators import PythonTranslator

from hrnn.paper import curves, published
from hrnn.paper import reproduce
from hrnn.config import get_scale

NOTEBOOKS = reproduce.find_notebooks()
NAMES = [p.stem for p in NOTEBOOKS]
REQUIRED_PARAMETERS = {"preset", "out", "seed"}


def test_the_six_notebooks_exist():
  assert NAMES == ["00_quickstart", "01_embedding_curves", "02_group_ablation", "03_pooling_ablation",
                   "04_sota_comparison", "05_fid_is"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_stored_without_outputs(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear outputs before committing"
  assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_tagged_parameters_cell_after_the_install_cell(path):
  nb = nbformat.read(path, as_version=4)
  code = [c for c in nb.cells if c.cell_type == "code"]
  tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1
  assert "find_spec(\"hrnn\")" in code[0].source and "pip" in code[0].source, "first cell installs hrnn"
  assert code[1] is tagged[0]
  assigned = {t.id for node in ast.parse(tagged[0].source).body for t in getattr(node, "targets", [])}
  assert REQUIRED_PARAMETERS <= assigned
  # papermill reads every one (an `=` in a comment, for one, hides a parameter from `papermill --help-notebook`).
  assert {p.name for p in PythonTranslator.inspect(tagged[0])} == assigned
  assert "preset = \"smoke\"" in tagged[0].source  # opened interactively, a notebook runs in seconds


def _tables(out):
  return {p.stem for p in (out / "tables").glob("*.csv")}


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
  """The papermill kernels' environment: one embedded-data root for the module (the tiny datasets are built once),
  and a single CPU device (not the 8 virtual devices conftest.py gives the sharding tests)."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("HRNN_DATA", str(tmp_path_factory.mktemp("data")))
    mp.setenv("XLA_FLAGS", "")
    yield


@pytest.mark.heavy
def test_every_notebook_runs_at_smoke_and_writes_its_tables(tmp_path, kernel_env):
  """The whole smoke reproduction (about 5 minutes on 2 cores): every notebook, table, figure and the README."""
  runs, readme = reproduce.reproduce("smoke", tmp_path)
  assert [(r.notebook, r.error) for r in runs] == [(n, None) for n in NAMES]
  assert list((tmp_path / "samples" / "quickstart").glob("*.wav")), "the quickstart writes its samples"
  executed = nbformat.read(tmp_path / "notebooks" / "00_quickstart.ipynb", as_version=4)
  assert any(o.get("output_type") == "display_data" and "text/html" in o.get("data", {})
             for c in executed.cells if c.cell_type == "code" for o in c.outputs), "plays audio inline"
  # ... and the models whose weights the repository ships (results/workstation/models), with no training.
  quickstart_html = "".join(o["data"]["text/html"] for c in executed.cells if c.cell_type == "code"
                            for o in c.outputs if "text/html" in o.get("data", {}))
  exports = curves.exported_models(Path(__file__).parents[1] / "results" / "workstation")
  assert quickstart_html.count(" (EMA weights of step ") == len(exports) * get_scale("smoke").listen
  assert all(f"{name} (EMA weights of step" in quickstart_html for name in exports)
  assert quickstart_html.count(": the classifier hears ") == len(exports) * get_scale("smoke").listen
  assert {t.key for t in published.TABLES} | {f.key for f in published.FIGURES} <= _tables(tmp_path)
  for f in published.FIGURES:
    assert (tmp_path / "plots" / f.plot).exists()
  text = readme.read_text()
  assert "Not produced" not in text and "preset `smoke`" in text
  for t in published.TABLES:
    meta = json.loads((tmp_path / "tables" / f"{t.key}.json").read_text())
    assert meta["preset"] == "smoke" and meta["hardware"] and meta["date"]
  # Every comparison has its per-seed table, so no verdict reads "not run".
  for key in ("fig2", "table1", "table2", "table3"):
    seeds = pd.read_csv(tmp_path / "tables" / f"{key}_seeds.csv")
    assert sorted(set(seeds["seed"])) == list(range(get_scale("smoke").seeds))
  verdict_rows = text.split("## Verdicts")[1].split("\n## ")[0]
  assert "**not run**" not in verdict_rows
  # Valid JSON everywhere: no bare NaN / Infinity (samples.json of sets without likelihoods holds null).
  def reject(constant):
    raise ValueError(f"not JSON: {constant}")
  for path in tmp_path.rglob("*.json"):
    json.loads(path.read_text(), parse_constant=reject)
  # Training curves have more than one point even at smoke (a line every step).
  curve = pd.read_json(tmp_path / "runs" / "sc09-espeak" / "baseline" / "metrics.jsonl", lines=True)
  assert curve["loss_bits"].notna().sum() >= 4
  # Samples are listed one row each, labelled, with a player and a spectrogram.
  executed = nbformat.read(tmp_path / "notebooks" / "03_pooling_ablation.ipynb", as_version=4)
  html = "".join(o["data"]["text/html"] for c in executed.cells if c.cell_type == "code" for o in c.outputs
                 if "text/html" in o.get("data", {}))
  assert html.count("<tr><td") >= 3 * get_scale("smoke").listen and "classifier hears" in html
  assert "<audio" in html and "data:image/png;base64" in html


def test_default_output_directory_is_inside_the_checkout_wherever_launched(tmp_path, monkeypatch):
  from hrnn.paper.results import default_out

  monkeypatch.chdir(tmp_path)
  assert default_out() == reproduce.NOTEBOOKS_DIR.parent / "results" / "notebooks"
