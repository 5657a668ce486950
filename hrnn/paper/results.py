"""Where a notebook's results go, and how they are labelled.

  OUT/tables/KEY.csv    the run's numbers: first column the row labels, then one column per quantity
  OUT/tables/KEY.md     the same table in Markdown
  OUT/tables/KEY.json   its labels: preset, datasets, hardware, date, notes
  OUT/plots/NAME.png    figures (palette PNGs: `save_plot`)
  OUT/samples/NAME.wav  generated audio

`KEY` and the column names match `hrnn.paper.published` for the paper's tables, so that
`hrnn.paper.reproduce.build_readme` can set published and regenerated numbers side by side.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import os
import platform
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import nbformat
import numpy as np
from IPython.display import HTML, Audio
from PIL import Image

from hrnn.data import read_audio


# What each dataset is, for every table, plot and README: the embedded stand-ins must never pass for the real data.
DATASET_LABELS: dict[str, str] = {
    "sc09": "SC09 (real speech recordings)",
    "beethoven": "Beethoven (real piano recordings)",
    "youtubemix": "YouTubeMix (real piano recordings)",
    "sc09-espeak": "sc09-espeak (synthetic speech, espeak-ng)",
    "beethoven-piano": "beethoven-piano (music21 + fluidsynth)",
    "piano-minute": "piano-minute (music21 + fluidsynth)",
}
DATASET_NOTES: dict[str, str] = {
    "sc09": "The paper's SC09: spoken digits zero..nine from the Speech Commands corpus, one second at 16 kHz, "
            "thousands of real speakers.",
    "beethoven": "The paper's Beethoven: piano sonatas recorded by people, cut into 8 s clips at 16 kHz.",
    "youtubemix": "The paper's YouTubeMix: an hour of recorded piano music from YouTube, cut into 1 min clips.",
    "sc09-espeak": "Generated on this machine: espeak-ng voices (8 English voices x ~100 variants) saying zero..nine, "
                   "one second at 16 kHz in SC09's layout.\n  Synthetic and far more regular than real speech: its "
                   "numbers are not comparable with the paper's SC09 numbers.",
    "beethoven-piano": "Generated on this machine: scores of the music21 corpus (Beethoven first) rendered to piano "
                       "audio with fluidsynth, 8 s clips in Beethoven's layout.\n  A synthetic piano with exact "
                       "timing: not comparable with recorded Beethoven.",
    "piano-minute": "Generated on this machine: music21 corpus scores rendered to piano with fluidsynth, 1 min "
                    "clips in YouTubeMix's layout.\n  Synthetic: not comparable with the recorded YouTubeMix.",
}


def dataset_label(name: str) -> str:
  """The dataset's name with what it is, e.g. 'sc09-espeak (synthetic speech, espeak-ng)' (unknown: the name)."""
  return DATASET_LABELS.get(name, name)


def table_dir(out: str | os.PathLike) -> Path:
  return _subdir(out, "tables")


def plot_dir(out: str | os.PathLike) -> Path:
  return _subdir(out, "plots")


def sample_dir(out: str | os.PathLike) -> Path:
  return _subdir(out, "samples")


def _subdir(out, name: str) -> Path:
  path = Path(out) / name
  path.mkdir(parents=True, exist_ok=True)
  return path


def cpu_model() -> str:
  """The CPU's marketing name (Linux /proc/cpuinfo), else what `platform` knows, with the core count."""
  name = ""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        name = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def hardware() -> str:
  """What computed the numbers: the accelerators JAX sees and the host CPU, e.g. '1 x cpu; host AMD EPYC, 2 cores'."""
  kinds: dict[str, int] = {}
  for device in jax.devices():
    kinds[device.device_kind] = kinds.get(device.device_kind, 0) + 1
  devices = ", ".join(f"{n} x {kind}" for kind, n in kinds.items())
  return f"{devices}; host {cpu_model()}"


def now() -> str:
  """The date and time, to the minute, in UTC."""
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def format_value(value) -> str:
  """A table cell: integers as they are, floats to 4 significant digits, missing values as '-'."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
  """A GitHub Markdown table; cells formatted with `format_value`."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def save_table(frame, out: str | os.PathLike, key: str, *, preset: str, datasets: str | list[str],
               notes: str = "", column_datasets: dict[str, str] | None = None) -> Path:
  """Writes a pandas DataFrame (index = row labels, named) as OUT/tables/KEY.{csv,md,json}; returns the CSV path.

  preset: the run scale (hrnn.config.SCALES) that produced it; datasets: what it was computed on; notes: anything a reader
  needs to interpret the numbers (model presets, steps, which estimator); column_datasets: the dataset of each
  column when columns differ in data (Table 4), shown in the README's column headers. The CSV keeps full
  precision; the Markdown rounds to 4 significant digits.
  """
  directory = table_dir(out)
  frame = frame.copy()
  frame.index.name = frame.index.name or "row"
  frame.to_csv(directory / f"{key}.csv")
  records = frame.reset_index().astype(object).where(frame.reset_index().notna(), None)
  (directory / f"{key}.md").write_text(markdown_table(list(records.columns), records.values.tolist()))
  meta = {"key": key, "preset": preset, "datasets": [datasets] if isinstance(datasets, str) else list(datasets),
          "hardware": hardware(), "date": now(), "notes": notes}
  if column_datasets:
    meta["column_datasets"] = dict(column_datasets)
  (directory / f"{key}.json").write_text(json.dumps(meta, indent=1))
  return directory / f"{key}.csv"


def palette_png(png: bytes, colors: int = 64) -> bytes:
  """A PNG re-encoded with a palette of `colors` colours (no dithering).

  Keeps committed results small: a spectrogram of noisy audio is ~1 MB as a true-colour PNG and a quarter of that
  with 64 colours, with no visible difference in these plots."""
  with Image.open(io.BytesIO(png)) as image:
    rgb = image.convert("RGB")
  buffer = io.BytesIO()
  rgb.quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
  return buffer.getvalue()


def save_plot(fig, out: str | os.PathLike, name: str, colors: int = 64) -> Path:
  """Saves a matplotlib figure as OUT/plots/NAME.png (150 dpi, `palette_png` with `colors`); returns the path."""
  path = plot_dir(out) / f"{name}.png"
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
  path.write_bytes(palette_png(buffer.getvalue(), colors))
  return path


def compact_notebook(path: str | os.PathLike, colors: int = 64) -> None:
  """Re-encodes every PNG output of an executed notebook with `palette_png`, in place (inline figures are most of
  an executed notebook's size)."""
  nb = nbformat.read(path, as_version=4)
  for cell in nb.cells:
    for output in cell.get("outputs", []):
      data = output.get("data", {})
      if "image/png" in data:
        png = palette_png(base64.b64decode(data["image/png"]), colors)
        data["image/png"] = base64.b64encode(png).decode("ascii")
  nbformat.write(nb, path)


def spectrograms(paths: list[str | os.PathLike], title: str, sample_rate: int = 16000):
  """One spectrogram panel per WAV file in `paths` (shared frequency axis), titled by file name; returns the
  matplotlib figure."""
  if not paths:
    raise ValueError("spectrograms: no audio files given")
  fig, axes = plt.subplots(1, len(paths), figsize=(3.2 * len(paths), 2.8), sharey=True, squeeze=False,
                           layout="constrained")
  for ax, path in zip(axes[0], paths):
    ax.specgram(read_audio(path), Fs=sample_rate, NFFT=512, noverlap=384, cmap="magma")
    ax.set_title(Path(path).name, fontsize=8)
    ax.set_xlabel("time (s)")
  axes[0][0].set_ylabel("frequency (Hz)")
  fig.suptitle(title)
  return fig


def default_out(name: str = "notebooks") -> Path:
  """Where a notebook writes when its `out` parameter is None: RESULTS/NAME, with RESULTS the `results/` folder of
  the hrnn checkout the code runs from (wherever the notebook was launched), else ./results for an installed hrnn."""
  checkout = Path(__file__).resolve().parents[2]
  base = checkout / "results" if (checkout / "pyproject.toml").exists() else Path.cwd() / "results"
  return base / name


def save_seed_tables(frame, out: str | os.PathLike, key: str, *, preset: str, datasets: str | list[str],
                     notes: str = "", column_datasets: dict[str, str] | None = None):
  """A quantity per model and seed, saved twice: OUT/tables/KEY_seeds.* (one row per model and seed, column
  "seed" first: what `hrnn.paper.verdicts` reads) and OUT/tables/KEY.* (one row per model: the mean over seeds in each
  column, beside "COLUMN sd", the sample standard deviation, and "seeds"). Returns the mean table.

  frame: a pandas DataFrame indexed by model label (the index repeats, once per seed) with a "seed" column.
  """
  values = [c for c in frame.columns if c != "seed"]
  grouped = frame.groupby(level=0, sort=False)[values]
  summary = grouped.mean()
  counts = frame.groupby(level=0, sort=False)["seed"].count()
  if counts.max() > 1:  # spreads of the quantities that vary between seeds (not of e.g. parameter counts)
    spread = grouped.std(ddof=1)
    varying = [v for v in values if not (spread[v].fillna(0) == 0).all()]
    summary = summary.join(spread[varying].add_suffix(" sd"))
    summary = summary[[c for v in values for c in ((v, f"{v} sd") if v in varying else (v,))]]
  summary["seeds"] = counts
  summary.index.name = frame.index.name
  seeds = f"; seeds {', '.join(str(s) for s in sorted(set(frame['seed'])))}"
  save_table(frame[["seed", *values]], out, f"{key}_seeds", preset=preset, datasets=datasets, notes=notes + seeds,
             column_datasets=column_datasets)
  save_table(summary, out, key, preset=preset, datasets=datasets,
             notes=notes + seeds + " (each value the mean over seeds; sd: sample standard deviation)",
             column_datasets=column_datasets)
  return summary


# A clip whose RMS level is at least this is played quieter and flagged: speech sits near 0.05-0.1, while a model
# that has not learned yet emits noise over the whole 8-bit range (uniform full-scale noise: RMS 1/sqrt(3) = 0.58).
NOISE_RMS = 0.2
NOISE_GAIN = 0.1  # -20 dB


def listening_rows(rows: list[tuple[str, str | os.PathLike]], sample_rate: int = 16000):
  """One HTML table row per clip: its label, an audio player and a spectrogram. A clip with RMS >= NOISE_RMS (near
  full-scale noise) gets a warning and plays at NOISE_GAIN of its level; every other clip plays at its own level
  (not normalised). rows: (label, WAV path). Returns an IPython HTML object (display it)."""
  cells = []
  for label, path in rows:
    wave = np.asarray(read_audio(path), np.float32)
    rms = float(np.sqrt(np.mean(wave ** 2))) if wave.size else 0.0
    noisy = rms >= NOISE_RMS
    player = Audio(np.clip(wave * (NOISE_GAIN if noisy else 1.0), -1, 1), rate=sample_rate, normalize=False)
    fig, ax = plt.subplots(figsize=(3.6, 1.3))
    ax.specgram(wave, Fs=sample_rate, NFFT=512, noverlap=384, cmap="magma")
    ax.set_xlabel("time (s)", fontsize=7)
    ax.set_ylabel("Hz", fontsize=7)
    ax.tick_params(labelsize=6)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    image = base64.b64encode(palette_png(buffer.getvalue(), 32)).decode("ascii")
    warning = (f"<br><b>&#9888; near full-scale noise (RMS {rms:.2f}): played at {20 * np.log10(NOISE_GAIN):.0f} dB"
               f"</b>" if noisy else f"<br>RMS {rms:.3f}")
    cells.append(f"<tr><td style='text-align:left'>{html.escape(label)}<br><code>{html.escape(Path(path).name)}"
                 f"</code>{warning}</td><td>{player._repr_html_()}</td>"
                 f"<td><img src='data:image/png;base64,{image}'></td></tr>")
  return HTML("<table><tr><th>sample</th><th>listen</th><th>spectrogram</th></tr>" + "".join(cells) + "</table>")
