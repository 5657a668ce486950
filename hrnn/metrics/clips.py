"""Audio clips -> classifier inputs: generated-sample folders and dataset splits, with bad files counted.

Every clip goes through SaShiMi's input path: read as mono float32 at 16 kHz (`hrnn.data.read_audio`, which
resamples other rates), padded with zeros or cut to 16,000 samples, then `log_mel`. Nothing is dropped silently:

  resampled  the file's rate was not 16 kHz (it was resampled)
  padded     shorter than 16,000 samples at 16 kHz (zeros appended)
  cut        longer than 16,000 samples (the tail dropped)
  silent     peak |x| below SILENCE_PEAK (-60 dBFS); scored like any clip, as SaShiMi did (its log-mel is all 0 dB)

A corrupt, truncated or empty file, or one holding NaN/inf samples, raises hrnn.data's AudioError naming the
file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from natsort import natsorted
from tqdm.auto import tqdm

from hrnn.data import load_split, read_audio
from hrnn.data.audio import probe
from hrnn.errors import HrnnError
from hrnn.metrics.features import CLIP_LENGTH, SAMPLE_RATE, fix_length, log_mel

SILENCE_PEAK = 1e-3  # -60 dBFS
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class ClipError(HrnnError):
  """An audio file cannot be scored; the message names it."""


@dataclasses.dataclass
class ClipReport:
  """How many clips needed fixing on the way to the classifier."""

  files: int = 0
  resampled: int = 0
  padded: int = 0
  cut: int = 0
  silent: int = 0


def sample_files(samples_dir: str | Path) -> list[Path]:
  """Audio files directly inside `samples_dir`, in natural order (sample_2 before sample_10)."""
  samples_dir = Path(samples_dir)
  if not samples_dir.is_dir():
    raise ClipError(f"samples folder {samples_dir} does not exist")
  files = natsorted((p for p in samples_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES), key=str)
  if not files:
    raise ClipError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {samples_dir}")
  return files


def read_clips(paths, desc: str = "reading clips") -> tuple[np.ndarray, ClipReport]:
  """Reads audio files as classifier-ready one-second clips.

  Returns:
    (float32 [N, 16000] waveforms, ClipReport counting what was fixed).
  """
  paths = [Path(p) for p in paths]
  waves = np.zeros((len(paths), CLIP_LENGTH), np.float32)
  report = ClipReport(files=len(paths))
  for i, path in enumerate(tqdm(paths, desc=desc, unit="clip", leave=False, disable=len(paths) < 100)):
    rate = probe(path).sample_rate
    x = read_audio(path, sample_rate=SAMPLE_RATE)  # AudioError naming the file if it holds NaN/inf
    report.resampled += int(rate != SAMPLE_RATE)
    report.padded += int(len(x) < CLIP_LENGTH)
    report.cut += int(len(x) > CLIP_LENGTH)
    report.silent += int(np.abs(x).max() < SILENCE_PEAK)
    waves[i] = fix_length(x)
  return waves, report


def clip_features(paths, desc: str = "reading clips") -> tuple[np.ndarray, ClipReport]:
  """Log-mel classifier inputs of audio files: (float32 [N, 32, 32], ClipReport)."""
  waves, report = read_clips(paths, desc)
  return log_mel(waves), report


def split_features(dataset: str, split: str, root=None) -> tuple[np.ndarray, np.ndarray, ClipReport]:
  """Log-mel inputs and digit labels of an SC09-layout dataset split (`path` and `label` columns).

  Returns:
    (float32 [N, 32, 32], int64 [N] labels 0..9 for zero..nine, ClipReport).
  """
  ds = load_split(dataset, split, root=root)
  missing = {"path", "label"} - set(ds.column_names)
  if missing:
    raise ClipError(f"dataset {dataset!r} split {split!r} has no {', '.join(sorted(missing))} column; the digit "
                    "classifier needs an SC09-layout dataset (sc09 or sc09-espeak)")
  columns = ds.select_columns(["path", "label"]).to_dict()
  features, report = clip_features(columns["path"], desc=f"{dataset} {split} clips")
  return features, np.asarray(columns["label"], np.int64), report
