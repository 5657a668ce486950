"""Batch reproduction: run the notebooks with papermill, then write the results README.

  run_notebooks(preset, out)   executes notebooks/NN_*.ipynb with parameters {preset, out}; each executed notebook
                               goes to OUT/notebooks/ (inline figures palette-encoded: `results.compact_notebook`),
                               its status to OUT/run_status.json. A failing notebook is recorded (with the failing
                               cell) and the next one runs.
  build_readme(out)            OUT/README.md: a verdict per claim of the paper (hrnn.paper.verdicts), the datasets,
                               every published table (hrnn.paper.published) beside this run's numbers
                               (OUT/tables/KEY.csv), labelled with preset, datasets, hardware and date, and links
                               to the run's WAVs.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import time
from pathlib import Path

import nbformat
from tqdm.auto import tqdm

from hrnn.paper import published
from hrnn.paper import verdicts
from hrnn.errors import HrnnError
from hrnn.paper.results import DATASET_NOTES, compact_notebook, cpu_model, dataset_label, markdown_table, now
from hrnn.config import Scale, get_scale

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
STATUS_FILE = "run_status.json"
COMPILATION_CACHE = Path.home() / ".cache" / "hrnn" / "jax"  # unless $JAX_COMPILATION_CACHE_DIR is set


class NotebookError(HrnnError):
  """The notebooks cannot be found or selected."""


@dataclasses.dataclass(frozen=True)
class NotebookRun:
  """Outcome of one notebook: `error` names the failing cell and the exception, None when it ran through."""

  notebook: str
  seconds: float
  error: str | None = None

  @property
  def ok(self) -> bool:
    return self.error is None


def find_notebooks(directory: str | os.PathLike | None = None, only: list[str] | None = None) -> list[Path]:
  """The notebooks `NN_name.ipynb` of `directory` in order; `only` keeps those whose name starts with an entry
  ("02" or "02_group_ablation")."""
  directory = Path(directory) if directory else NOTEBOOKS_DIR
  if not directory.is_dir():
    raise NotebookError(f"notebook directory {directory} not found; run from a checkout of the hrnn repository "
                        f"or pass --notebooks DIR")
  found = sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))
  if only:
    unknown = [o for o in only if not any(p.stem.startswith(o) for p in found)]
    if unknown:
      raise NotebookError(f"--only {', '.join(unknown)}: no such notebook in {directory}; "
                          f"have {', '.join(p.stem for p in found)}")
    found = [p for p in found if any(p.stem.startswith(o) for o in only)]
  if not found:
    raise NotebookError(f"no notebooks NN_*.ipynb in {directory}")
  return found


def _describe_failure(error: Exception, executed: Path) -> str:
  """'cell [7] (`first line of its source`): ValueError: message' for a failed cell ([7] = its execution count,
  as Jupyter shows it), else the exception itself (a dead kernel, a timeout)."""
  if not hasattr(error, "ename"):
    return f"{type(error).__name__}: {error}".strip()
  first_line = ""
  try:
    for cell in nbformat.read(executed, as_version=4).cells:
      if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
        source = cell.source.strip().splitlines()
        first_line = f" (`{source[0][:80]}`)" if source else ""
  except (OSError, ValueError):
    pass
  return f"cell [{error.exec_count}]{first_line}: {error.ename}: {str(error.evalue).strip()[:500]}"


def run_notebook(notebook: Path, out: Path, parameters: dict, kernel_name: str | None = None) -> NotebookRun:
  """Executes one notebook with papermill into OUT/notebooks/; never raises for an error inside the notebook."""
  import papermill  # the one import inside a function here: seconds to import, only when notebooks run

  executed = out / "notebooks" / notebook.name
  executed.parent.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  try:
    papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name=kernel_name,
                               cwd=str(notebook.parent), progress_bar=True)
  except Exception as e:  # a failed cell, a dead kernel, a timeout: record it, let the other notebooks run
    return NotebookRun(notebook.stem, time.perf_counter() - start, _describe_failure(e, executed))
  seconds = time.perf_counter() - start
  compact_notebook(executed)
  return NotebookRun(notebook.stem, seconds)


def run_notebooks(preset: str, out: str | os.PathLike, only: list[str] | None = None, *,
                  notebooks_dir: str | os.PathLike | None = None, parameters: dict | None = None,
                  kernel_name: str | None = None) -> list[NotebookRun]:
  """Runs the notebooks in order at run scale `preset`, writing into `out`; returns one NotebookRun each.

  Every notebook receives the parameters {preset, out} (plus `parameters`, which override). The statuses go to
  OUT/run_status.json (merged with earlier runs' for notebooks not re-run, so `--only` refreshes one notebook).
  """
  out = Path(out).resolve()
  out.mkdir(parents=True, exist_ok=True)
  notebooks = find_notebooks(notebooks_dir, only)
  params = {"preset": preset, "out": str(out), **(parameters or {})}
  runs = []
  with kernel_environment(get_scale(preset)):
    bar = tqdm(notebooks, desc=f"notebooks ({preset})", unit="notebook")
    for notebook in bar:
      bar.set_postfix_str(notebook.stem)
      run = run_notebook(notebook, out, params, kernel_name)
      runs.append(run)
      status = "ok" if run.ok else f"FAILED at {run.error}"
      tqdm.write(f"{notebook.stem}: {status} ({run.seconds:.0f} s)")
  _write_status(out, preset, runs)
  return runs


@contextlib.contextmanager
def kernel_environment(scale: Scale):
  """The environment the notebook kernels inherit while the notebooks run (restored afterwards):

  - JAX_COMPILATION_CACHE_DIR (unless set): the notebooks compile the same functions for the same shapes again and
    again (the baseline of one is the baseline of the next); JAX's persistent cache compiles each once.
  - XLA_FLAGS: the scale's `xla_flags` appended.
  """
  saved = {k: os.environ.get(k) for k in ("JAX_COMPILATION_CACHE_DIR", "XLA_FLAGS")}
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(COMPILATION_CACHE))
  flags = f"{os.environ.get('XLA_FLAGS', '')} {scale.xla_flags}".strip()
  if flags:
    os.environ["XLA_FLAGS"] = flags
  try:
    yield
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value


def _write_status(out: Path, preset: str, runs: list[NotebookRun]):
  path = out / STATUS_FILE
  previous = json.loads(path.read_text())["notebooks"] if path.exists() else []
  fresh = {r.notebook for r in runs}
  merged = [r for r in previous if r["notebook"] not in fresh] + [dataclasses.asdict(r) for r in runs]
  merged.sort(key=lambda r: r["notebook"])
  path.write_text(json.dumps({"preset": preset, "date": now(), "host": cpu_model(), "notebooks": merged},
                             indent=1))


# ------------------------------------------------------------------------------------------------ the README


def _read_table(out: Path, key: str) -> tuple[list[str], dict[str, list[str]], dict] | None:
  """(columns, {row label: values}, labels) of OUT/tables/KEY.csv and its .json, None when the run has none."""
  path = out / "tables" / f"{key}.csv"
  if not path.exists():
    return None
  with path.open(newline="") as f:
    rows = list(csv.reader(f))
  meta_path = path.with_suffix(".json")
  meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
  return rows[0][1:], {r[0]: r[1:] for r in rows[1:]}, meta


def _number(text: str):
  """A CSV cell as a number when it is one (formatted like the published values), else the text."""
  if text == "":
    return None
  try:
    value = float(text)
  except ValueError:
    return text
  return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _labels(meta: dict) -> str:
  if not meta:
    return ""
  line = (f"preset `{meta.get('preset', '?')}`, dataset {', '.join(dataset_label(d) for d in meta.get('datasets', []))}, "
          f"{meta.get('hardware', '?')}, {meta.get('date', '?')}")
  return line + (f". {meta['notes']}" if meta.get("notes") else "")


def _missing(notebook: str, statuses: dict[str, dict]) -> str:
  status = statuses.get(notebook)
  if status is None:
    return f"_Not produced: notebook `{notebook}` was not run._\n"
  if status.get("error"):
    return (f"_Not produced: notebook `{notebook}` failed at {status['error']} "
            f"(see `notebooks/{notebook}.ipynb`)._\n")
  return f"_Not produced: notebook `{notebook}` ran but wrote no table._\n"


def paper_table_section(t: published.PaperTable, out: Path, statuses: dict[str, dict]) -> str:
  """One published table with this run's numbers beside each published column."""
  lines = [f"## {t.title}\n", f"Published: {t.source}.  \n"]
  run = _read_table(out, t.key)
  if run is None:
    lines.append(f"This run: {_missing(t.notebook, statuses)}")
    header = [t.row_label, *t.columns]
    lines.append(markdown_table(header, [[r.label, *r.values] for r in t.rows]))
  else:
    run_columns, run_rows, meta = run
    lines.append(f"This run (notebook `{t.notebook}`): {_labels(meta)}\n")
    columns = list(t.columns) + [c for c in run_columns if c not in t.columns]
    on = meta.get("column_datasets", {})
    header = [t.row_label] + [f"{c} ({who})" for c in columns
                              for who in ("paper", f"this run: {on[c]}" if c in on else "this run")]
    labels = [r.label for r in t.rows] + [label for label in run_rows if label not in {r.label for r in t.rows}]
    body = []
    for label in labels:
      row = [label]
      for c in columns:
        published = t.published(label, c) if c in t.columns else None
        ours = run_rows.get(label)
        row += [published, _number(ours[run_columns.index(c)]) if ours and c in run_columns else None]
      body.append(row)
    lines.append("\n" + markdown_table(header, body))
  lines += [f"\n{t.note}\n" if t.note else "", _row_sources(t)]
  return "".join(lines)


def _row_sources(t: published.PaperTable) -> str:
  extra = [f"{r.label}: {r.source}" for r in t.rows if r.source]
  return "".join(f"Row source, {e}.  \n" for e in extra)


def figure_section(f: published.PaperFigure, out: Path, statuses: dict[str, dict]) -> str:
  """A published figure: its finding, this run's plot and end-point table."""
  lines = [f"## {f.title}\n", f"Published: {f.source}. Finding: {f.finding}\n\n"]
  if (out / "plots" / f.plot).exists():
    lines.append(f"![{f.title}](plots/{f.plot})\n\n")
  run = _read_table(out, f.key)
  if run is None:
    lines.append(f"This run: {_missing(f.notebook, statuses)}")
  else:
    columns, rows, meta = run
    lines.append(f"This run (notebook `{f.notebook}`): {_labels(meta)}\n\n")
    lines.append(markdown_table(["", *columns], [[k, *map(_number, v)] for k, v in rows.items()]))
  return "".join(lines)


def other_tables_section(out: Path) -> str:
  """Tables the run wrote that are not paper tables (e.g. the quickstart's), as the notebooks wrote them."""
  known = {t.key for t in published.TABLES} | {f.key for f in published.FIGURES}
  extra = sorted(p for p in (out / "tables").glob("*.md") if p.stem not in known) if (out / "tables").is_dir() else []
  if not extra:
    return ""
  parts = ["## Other tables of this run\n"]
  for path in extra:
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    parts.append(f"\n### {path.stem}\n\n{_labels(meta)}\n\n{path.read_text()}")
  return "".join(parts)


def verdict_section(out: Path, statuses: dict[str, dict]) -> str:
  """The claims of the paper, each with this run's verdict, evidence and (when not reproduced) the reason."""
  rows = [[f"{v.claim} ({v.source})", f"**{v.verdict}**", v.evidence, v.why or ""]
          for v in verdicts.verdicts(out, statuses)]
  return ("## Verdicts\n\n" + markdown_table(["claim of the paper", "verdict", "evidence (this run)", "why"], rows)
          + "\n" + verdicts.rules() + "\n")


def datasets_section(out: Path) -> str:
  """Two lines on each dataset the run's tables name."""
  names: list[str] = []
  for path in sorted((out / "tables").glob("*.json")) if (out / "tables").is_dir() else []:
    for name in json.loads(path.read_text()).get("datasets", []):
      if name not in names:
        names.append(name)
  if not names:
    return ""
  lines = [f"- **{dataset_label(n)}**: {DATASET_NOTES.get(n, '')}" for n in names]  # notes: 2 lines, indented
  return "## Datasets\n\n" + "\n".join(lines) + "\n"


def samples_section(out: Path) -> str:
  """Links to the WAV files under OUT/samples/NAME/ that are committed (the scored SC09 sets, `sc09*`, are not:
  see .gitignore; the executed notebooks embed the clips they play)."""
  sets = sorted(d for d in (out / "samples").iterdir() if d.is_dir() and not d.name.startswith("sc09")) \
      if (out / "samples").is_dir() else []
  lines = []
  for directory in sets:
    wavs = sorted(directory.glob("*.wav"))
    if wavs:
      links = ", ".join(f"[{w.stem}](samples/{directory.name}/{w.name})" for w in wavs)
      lines.append(f"- `{directory.name}`: {links}")
  if not lines:
    return ""
  return "## Listen\n\nGenerated clips kept with the results (16 kHz WAV):\n\n" + "\n".join(lines) + "\n"


def build_readme(out: str | os.PathLike) -> Path:
  """Writes OUT/README.md from OUT/run_status.json, OUT/tables/, OUT/plots/ and OUT/samples/; returns its path."""
  out = Path(out)
  status_path = out / STATUS_FILE
  status = json.loads(status_path.read_text()) if status_path.exists() else {"notebooks": []}
  statuses = {s["notebook"]: s for s in status["notebooks"]}
  preset = status.get("preset", "?")
  parts = [
      f"# HarmonicRNN results: preset `{preset}`\n\n",
      f"Regenerated by `hrnn reproduce --preset {preset}` ({status.get('date', '?')}; host "
      f"{status.get('host', '?')}). Each claim of the paper gets a verdict computed from this run's tables; each "
      f"table shows the published number (\"paper\", from `hrnn/paper/published.py`, sources under each table) "
      f"beside this run's (\"this run\", from `tables/KEY.csv`, full precision there). Small presets train small "
      f"models briefly on the kit's embedded datasets: compare trends, not values.\n\n",
      verdict_section(out, statuses), "\n",
      datasets_section(out), "\n",
      "## Notebooks\n\n",
      markdown_table(["notebook", "status", "seconds"],
                     [[f"[{s['notebook']}](notebooks/{s['notebook']}.ipynb)",
                       "ok" if not s.get("error") else f"failed at {s['error']}", round(s["seconds"])]
                      for s in status["notebooks"]]),
      "\n",
  ]
  for f in published.FIGURES:
    parts.append(figure_section(f, out, statuses) + "\n")
  for t in published.TABLES:
    parts.append(paper_table_section(t, out, statuses) + "\n")
  parts.append(samples_section(out) + "\n")
  parts.append(other_tables_section(out))
  path = out / "README.md"
  path.write_text("".join(parts).rstrip() + "\n")
  return path


def reproduce(preset: str, out: str | os.PathLike, only: list[str] | None = None,
              **kwargs) -> tuple[list[NotebookRun], Path]:
  """`run_notebooks` then `build_readme`: the whole of `hrnn reproduce`."""
  runs = run_notebooks(preset, out, only, **kwargs)
  return runs, build_readme(out)

