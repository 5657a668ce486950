"""What a dataset holds: clips and seconds per split, skipped files, speakers, token histogram, a spectrogram plot.

Used by `hrnn data info`; everything comes from the same index and loader as training (hrnn.data.pipeline).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrnn.data.audio import AudioError, read_audio
from hrnn.data.layout import speaker
from hrnn.data.manifest import warn_if_changed
from hrnn.data.pipeline import REBUILD, index_split, tokens_of
from hrnn.data.quantization import NUM_CLASSES, check_method
from hrnn.data.sources import dataset_home, locate, read_marker
from hrnn.data.specs import SPLITS, get_spec


def _examined(n: int, limit: int) -> np.ndarray:
  """Indices of the examples whose tokens are examined: all (limit 0 or n <= limit), else `limit` spread evenly."""
  return np.arange(n) if limit <= 0 or n <= limit else np.linspace(0, n - 1, limit).round().astype(int)


def describe(name: str, root: str | Path | None = None, data_dir: str | Path | None = None,
             quantization: str | None = None, examples: int = 256) -> dict:
  """Summary of every split of a prepared (or `data_dir`) dataset.

  Args:
    examples: per split, how many examples (spread evenly) are decoded for the token histogram and the silent-
      clip count; 0 decodes all.
  Returns:
    {"name", "layout_dir", "quantization", "length", "sample_rate", "marker" (how it was built, or None),
     "changed" (files lost, added or resized since `prepare`; each also warned about),
     "splits": {split: {"clips", "seconds", "padded", "resampled", "downmixed", "cut", "skipped" [[file, why]],
                        "examined", "silent", "histogram" [256 counts], ("speakers", "labels" for SC09 layout)}},
     "shared_speakers" (SC09 layout: speakers found in more than one split)}.
    A file that fails to decode (e.g. NaN samples) is counted among "skipped", not among the clips.
  """
  spec = get_spec(name, root)
  method = check_method(quantization or spec.quantization)
  layout = locate(name, root, data_dir)
  summary = {"name": name, "layout_dir": str(layout), "quantization": method, "length": spec.length,
             "sample_rate": spec.sample_rate,
             "marker": None if data_dir is not None else read_marker(dataset_home(name, root)),
             "changed": [] if data_dir is not None else warn_if_changed(name, dataset_home(name, root),
                                                                        REBUILD.format(name=name))}
  speakers = {}
  summary["splits"] = {}
  for split in SPLITS:
    index = index_split(spec, layout, split)
    paths = index.columns["path"]
    chosen = _examined(len(paths), examples)
    tokens, skipped, undecodable = [], [list(s) for s in index.skipped], set()
    for i in chosen:
      try:
        tokens.append(tokens_of(paths[i], spec, method))
      except AudioError as e:  # corrupt beyond its header, e.g. NaN samples: skipped as training skips it
        undecodable.add(int(i))
        skipped.append([paths[i], str(e).removeprefix(f"{paths[i]}: ")])
    columns = {key: [v for i, v in enumerate(values) if i not in undecodable] for key, values in index.columns.items()}
    lengths = np.array(columns["length"], np.int64)
    histogram = np.zeros(NUM_CLASSES, np.int64)
    for t in tokens:
      histogram += np.bincount(t, minlength=NUM_CLASSES)
    entry = {"clips": len(lengths), "seconds": float(lengths.sum() / spec.sample_rate),
             "padded": int((lengths < spec.length).sum()), "resampled": index.resampled,
             "downmixed": index.downmixed, "cut": index.cut, "skipped": skipped,
             "examined": len(tokens), "silent": int(sum(t.min() == t.max() for t in tokens)),
             "histogram": histogram.tolist()}
    if "label" in columns:
      speakers[split] = {speaker(Path(p)) for p in columns["path"]}
      entry["speakers"] = len(speakers[split])
      entry["labels"] = np.bincount(columns["label"], minlength=10).tolist()
    summary["splits"][split] = entry
  if speakers:
    shared = set.union(*[speakers[a] & speakers[b] for a in SPLITS for b in SPLITS if a < b])
    summary["shared_speakers"] = sorted(shared)
  return summary


def entropy_bits(histogram: list[int]) -> float:
  """Entropy in bits of a token histogram (the NLL a model that ignores context would reach)."""
  p = np.asarray(histogram, np.float64)
  p = p[p > 0] / p.sum()
  return float(-(p * np.log2(p)).sum())


def plot(summary: dict, path: str | Path) -> Path:
  """Writes a PNG for a `describe` summary: the first training clip's spectrogram and each split's token
  histogram."""
  # The one place this module imports matplotlib (seconds): `hrnn data info` without --plot does not need it.
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  spec = get_spec(summary["name"])
  first = index_split(spec, Path(summary["layout_dir"]), "train").columns["path"][0]
  audio = read_audio(first, spec.sample_rate)[:spec.length]
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7))
  top.specgram(audio, NFFT=512, Fs=spec.sample_rate, noverlap=384, cmap="magma")
  top.set(title=f"{spec.name}: {Path(first).name}", xlabel="seconds", ylabel="Hz")
  for split, entry in summary["splits"].items():
    counts = np.asarray(entry["histogram"], np.float64)
    bottom.plot(counts / max(counts.sum(), 1), label=f"{split} ({entry['examined']} clips)")
  bottom.set(title=f"token histogram ({summary['quantization']})", xlabel="token", ylabel="frequency",
             yscale="log")
  bottom.legend()
  fig.tight_layout()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
