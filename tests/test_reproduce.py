"""hrnn.paper.reproduce: the papermill runner (failures isolated and named) and the results README."""

import json
import os

import nbformat
import pandas as pd
import pytest

from hrnn.paper import published
from hrnn.paper import reproduce
from hrnn.paper.results import save_table
from hrnn.config import get_scale


def _notebook(path, *cells):
  nb = nbformat.v4.new_notebook()
  params = nbformat.v4.new_code_cell('preset = "smoke"\nout = "."')
  params.metadata["tags"] = ["parameters"]
  nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
  nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
  nbformat.write(nb, path)


def test_failing_notebook_is_reported_and_the_others_still_run(tmp_path):
  books = tmp_path / "books"
  books.mkdir()
  write = "import pathlib\npathlib.Path(out, '{name}.txt').write_text(preset)"
  _notebook(books / "01_first.ipynb", write.format(name="first"))
  _notebook(books / "02_broken.ipynb", "x = 1", "# the broken cell\nraise ValueError('deliberate failure')",
            write.format(name="never"))
  _notebook(books / "03_last.ipynb", write.format(name="last"))
  out = tmp_path / "out"

  runs = reproduce.run_notebooks("cpu", out, notebooks_dir=books)

  assert [r.notebook for r in runs] == ["01_first", "02_broken", "03_last"]
  assert [r.ok for r in runs] == [True, False, True]
  # Executed: parameters, injected parameters, x = 1, the broken cell: execution count 4.
  assert runs[1].error == "cell [4] (`# the broken cell`): ValueError: deliberate failure"
  assert (out / "first.txt").read_text() == "cpu" and (out / "last.txt").read_text() == "cpu"
  assert not (out / "never.txt").exists()
  assert sorted(p.name for p in (out / "notebooks").iterdir()) == ["01_first.ipynb", "02_broken.ipynb",
                                                                   "03_last.ipynb"]
  status = json.loads((out / "run_status.json").read_text())
  assert status["preset"] == "cpu" and [s["notebook"] for s in status["notebooks"]] == [r.notebook for r in runs]

  # --only re-runs one notebook and keeps the others' status.
  (out / "first.txt").unlink()
  again = reproduce.run_notebooks("cpu", out, only=["01"], notebooks_dir=books)
  assert [r.notebook for r in again] == ["01_first"] and (out / "first.txt").exists()
  status = json.loads((out / "run_status.json").read_text())
  assert [s["notebook"] for s in status["notebooks"]] == ["01_first", "02_broken", "03_last"]
  assert status["notebooks"][1]["error"] == runs[1].error


def test_find_notebooks_selects_and_rejects(tmp_path):
  for name in ("00_a", "01_b", "02_c"):
    _notebook(tmp_path / f"{name}.ipynb")
  (tmp_path / "helper.ipynb").write_text("{}")
  assert [p.stem for p in reproduce.find_notebooks(tmp_path)] == ["00_a", "01_b", "02_c"]
  assert [p.stem for p in reproduce.find_notebooks(tmp_path, ["02", "00_a"])] == ["00_a", "02_c"]
  with pytest.raises(reproduce.NotebookError, match="--only 07"):
    reproduce.find_notebooks(tmp_path, ["07"])
  with pytest.raises(reproduce.NotebookError, match="not found"):
    reproduce.find_notebooks(tmp_path / "missing")


def _fake_run(out):
  """Tables as the notebooks write them, for every paper table except table4 (its notebook 'failed')."""
  for t in published.TABLES:
    if t.key == "table4":
      continue
    rows = {r.label: [0.5 + i for i in range(len(t.columns))] for r in t.rows[:2]}
    rows["ours only"] = [9.25] * len(t.columns)
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(t.columns))
    frame.index.name = t.row_label
    save_table(frame, out, t.key, preset="cpu", datasets=["sc09-espeak"], notes=f"notes of {t.key}")
  curves = pd.DataFrame({"final train NLL": [2.5, 3.0]}, index=["sinusoidal", "linear"])
  save_table(curves, out, "fig2", preset="cpu", datasets="sc09-espeak")
  save_table(pd.DataFrame({"test NLL (bits)": [3.25]}, index=["quickstart"]), out, "quickstart",
             preset="cpu", datasets="sc09-espeak")
  statuses = [{"notebook": t.notebook, "seconds": 1.0, "error": None} for t in published.TABLES if t.key != "table4"]
  statuses.append({"notebook": "04_sota_comparison", "seconds": 2.0, "error": "cell 5 (`train()`): OSError: no"})
  (out / "run_status.json").write_text(json.dumps({"preset": "cpu", "date": "today", "host": "x",
                                                   "notebooks": statuses}))


def test_readme_contains_every_table_published_and_regenerated(tmp_path):
  _fake_run(tmp_path)
  text = reproduce.build_readme(tmp_path).read_text()

  assert text.startswith("# HarmonicRNN results: preset `cpu`")
  for t in published.TABLES:
    assert f"## {t.title}" in text
    section = text.split(f"## {t.title}")[1].split("\n## ")[0]
    for r in t.rows:  # every published number appears, in its row
      line = next(line for line in section.splitlines() if line.startswith(f"| {r.label} |"))
      for v in r.values:
        assert (f"| {v:.4g} |" if v is not None else "| - |") in line
    if t.key == "table4":
      assert "failed at cell 5 (`train()`): OSError: no" in section
    else:
      assert "| ours only |" in section and "| 9.25 |" in section
      assert f"notes of {t.key}" in section and "preset `cpu`, dataset sc09-espeak (synthetic speech, espeak-ng)" in section
  for f in published.FIGURES:
    assert f"## {f.title}" in text and f.finding in text
  assert "| sinusoidal | 2.5 |" in text
  assert "### quickstart" in text and "| quickstart | 3.25 |" in text


def test_readme_opens_with_verdicts_and_names_its_datasets_and_wavs(tmp_path):
  from hrnn.paper import verdicts
  from hrnn.data import write_wav
  import numpy as np

  _fake_run(tmp_path)
  for name in ("quickstart", "sc09-espeak-baseline"):  # the scored SC09 set is not committed: not linked
    write_wav(tmp_path / "samples" / name / "sample_00000.wav", np.zeros(160, np.float32))
  text = reproduce.build_readme(tmp_path).read_text()
  head = text.split("\n## ")[1]
  assert head.startswith("Verdicts") and verdicts.rules() in head
  for v in verdicts.verdicts(tmp_path, {"04_sota_comparison": {"error": "cell 5 (`train()`): OSError: no"}}):
    assert f"| {v.claim} ({v.source}) | **{v.verdict}** |" in head
  # The fake run has no per-seed tables: the comparisons are not run, naming their notebooks.
  assert "| **not run** | - | notebook `02_group_ablation` ran but wrote no per-seed table table1_seeds |" in head
  # table4 is missing (its notebook failed); table3 exists, on the embedded data: no value comparison.
  assert f"| {verdicts.VALUES_MUSIC[0]} (Table 4) | **not run** | - | notebook `04_sota_comparison` failed at " \
         f"cell 5 (`train()`): OSError: no |" in head
  assert f"| {verdicts.VALUES_SC09[0]} (Tables 2-3) | **not reproduced at this scale** |" in head
  datasets = text.split("## Datasets")[1].split("\n## ")[0]
  assert "**sc09-espeak (synthetic speech, espeak-ng)**: Generated on this machine" in datasets
  assert "[sample_00000](samples/quickstart/sample_00000.wav)" in text
  assert "samples/sc09-espeak-baseline/" not in text


def test_readme_header_row_pairs_paper_and_run_columns(tmp_path):
  _fake_run(tmp_path)
  text = reproduce.build_readme(tmp_path).read_text()
  t = published.table("table1")
  header = "| pooling groups | " + " | ".join(f"{c} (paper) | {c} (this run)" for c in t.columns) + " |"
  assert header in text
  # dense: paper (1, 7.8, 1.956) beside this run's (0.5, 1.5, 2.5).
  assert "| dense | 1 | 0.5 | 7.8 | 1.5 | 1.956 | 2.5 |" in text


def test_kernel_environment_adds_the_scale_flags_and_restores(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--user_flag")
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  with reproduce.kernel_environment(get_scale("smoke")):
    assert os.environ["XLA_FLAGS"] == f"--user_flag {get_scale('smoke').xla_flags}"
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(reproduce.COMPILATION_CACHE)
  assert os.environ["XLA_FLAGS"] == "--user_flag" and "JAX_COMPILATION_CACHE_DIR" not in os.environ
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")
  with reproduce.kernel_environment(get_scale("cpu")):
    assert os.environ["XLA_FLAGS"] == "--user_flag" and os.environ["JAX_COMPILATION_CACHE_DIR"] == "/elsewhere"


def test_spectrograms_one_panel_per_file_sharing_the_frequency_axis(tmp_path):
  import matplotlib
  import numpy as np

  from hrnn.data import write_wav
  from hrnn.paper.results import spectrograms

  matplotlib.use("Agg")
  paths = []
  for i, hz in enumerate((440.0, 2000.0)):
    paths.append(tmp_path / f"tone_{i}.wav")
    write_wav(paths[-1], 0.5 * np.sin(2 * np.pi * hz * np.arange(8000) / 16000).astype(np.float32))
  fig = spectrograms(paths, "two tones")
  axes = fig.get_axes()
  assert [ax.get_title() for ax in axes] == ["tone_0.wav", "tone_1.wav"]
  assert axes[0].get_ylim() == axes[1].get_ylim() == (0.0, 8000.0)  # up to Nyquist, shared
  assert fig.get_suptitle() == "two tones"
  with pytest.raises(ValueError, match="no audio files"):
    spectrograms([], "nothing")


def test_save_plot_writes_a_palette_png_of_the_figure(tmp_path):
  import matplotlib
  import matplotlib.pyplot as plt
  import numpy as np
  from PIL import Image

  from hrnn.paper.results import save_plot

  matplotlib.use("Agg")
  fig, ax = plt.subplots(figsize=(2, 1))
  ax.imshow(np.random.default_rng(0).random((64, 64)), cmap="magma")  # many colours in, at most 32 out
  path = save_plot(fig, tmp_path, "noise", colors=32)
  assert path == tmp_path / "plots" / "noise.png"
  with Image.open(path) as image:
    assert image.format == "PNG" and image.mode == "P"
    assert len(image.getcolors()) <= 32


def test_compact_notebook_palettes_every_png_output_and_keeps_the_rest(tmp_path):
  import base64
  import io

  import nbformat
  import numpy as np
  from PIL import Image

  from hrnn.paper.results import compact_notebook

  noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(noise).save(buffer, "PNG")
  cell = nbformat.v4.new_code_cell("plot()")
  cell.outputs = [nbformat.v4.new_output("display_data", {"image/png": base64.b64encode(buffer.getvalue()).decode(),
                                                          "text/plain": "<Figure>"}),
                  nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
  nb = nbformat.v4.new_notebook(cells=[cell])
  path = tmp_path / "executed.ipynb"
  nbformat.write(nb, path)
  compact_notebook(path, colors=16)
  outputs = nbformat.read(path, as_version=4).cells[0].outputs
  with Image.open(io.BytesIO(base64.b64decode(outputs[0]["data"]["image/png"]))) as image:
    assert image.mode == "P" and image.size == (64, 64) and len(image.getcolors()) <= 16
  assert outputs[0]["data"]["text/plain"] == "<Figure>" and outputs[1]["text"] == "kept\n"


def test_seed_tables_mean_and_spread_per_model(tmp_path):
  from hrnn.paper.results import save_seed_tables
  from hrnn.paper.verdicts import read_seeds

  frame = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 2], "groups": [1, 1, 1, 4, 4, 4],
                        "test NLL (bits)": [5.0, 5.2, 5.4, 4.9, 4.9, 5.2]},
                       index=pd.Index(["dense"] * 3 + ["4 groups"] * 3, name="pooling groups"))
  summary = save_seed_tables(frame, tmp_path, "table1", preset="cpu", datasets="sc09-espeak")
  # dense: mean 5.2, sd sqrt((0.04 + 0 + 0.04) / 2) = 0.2; 4 groups: mean 5.0, sd sqrt((0.01 + 0.01 + 0.04) / 2).
  assert summary.loc["dense", "test NLL (bits)"] == pytest.approx(5.2)
  assert summary.loc["dense", "test NLL (bits) sd"] == pytest.approx(0.2)
  assert summary.loc["4 groups", "test NLL (bits) sd"] == pytest.approx(0.03 ** 0.5)
  assert "groups sd" not in summary.columns and list(summary["seeds"]) == [3, 3]  # no spread of a constant
  assert list(summary.index) == ["dense", "4 groups"]
  seeds = read_seeds(tmp_path, "table1")
  assert seeds.values["dense"]["test NLL (bits)"] == [5.0, 5.2, 5.4]
  meta = json.loads((tmp_path / "tables" / "table1.json").read_text())
  assert "seeds 0, 1, 2" in meta["notes"] and "mean over seeds" in meta["notes"]


def test_listening_rows_flag_and_quieten_full_scale_noise(tmp_path):
  import base64
  import io
  import re
  import wave

  import numpy as np

  from hrnn.data import write_wav
  from hrnn.paper.results import NOISE_GAIN, listening_rows

  rng = np.random.default_rng(0)
  write_wav(tmp_path / "noise.wav", rng.uniform(-1, 1, 16000).astype(np.float32))  # RMS 1/sqrt(3) = 0.58
  write_wav(tmp_path / "speech.wav", (0.1 * np.sin(np.arange(16000) / 3)).astype(np.float32))  # RMS 0.071
  html = listening_rows([("model a, seed 0", tmp_path / "noise.wav"), ("model b, seed 1", tmp_path / "speech.wav")]).data
  rows = html.split("<tr><td")[1:]
  assert len(rows) == 2 and "model a, seed 0" in rows[0] and "model b, seed 1" in rows[1]
  assert "near full-scale noise (RMS 0.58): played at -20 dB" in rows[0] and "near full-scale" not in rows[1]
  assert all("<audio" in r and "data:image/png;base64," in r for r in rows)

  def peak(row):  # the embedded WAV's peak, in 16-bit units: not normalised, the noise scaled by NOISE_GAIN
    data = base64.b64decode(re.search(r'data:audio/wav;base64,([^"]+)"', row).group(1))
    with wave.open(io.BytesIO(data)) as w:
      return np.abs(np.frombuffer(w.readframes(w.getnframes()), np.int16)).max() / 32767

  assert peak(rows[0]) == pytest.approx(NOISE_GAIN, abs=0.01) and peak(rows[1]) == pytest.approx(0.1, abs=0.01)
