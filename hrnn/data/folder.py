"""A dataset of one's own audio: any folder tree of audio files, turned into the kit's "splits" layout.

`prepare_folder(source, name)` (`hrnn data prepare folder --source DIR --name NAME`):
  1. finds the audio files under `source` (by suffix, AUDIO_SUFFIXES; hidden files and folders are left out) and
     natsorts them by their path relative to `source`;
  2. decodes each with hrnn.data.audio.read_audio: any rate is resampled to 16 kHz, stereo down-mixed; a file
     that cannot be read (corrupt, truncated, empty, an unknown format) or holds NaN / inf samples is skipped
     with a DataWarning naming it;
  3. splits the readable files, in that order, by file (the clips of one recording never straddle two splits):
     with n files, valid and test get max(1, int(0.94 n) - int(0.88 n)) and max(1, n - int(0.94 n)) files, the
     last ones, train the rest (Beethoven's 0.88 / 0.06 / 0.06 for large n; at least one file per split);
  4. cuts each file into clips of `clip_seconds`: a file of T samples gives floor(T / L) clips of L samples and
     its remainder as a last, shorter clip (padded with mask 0 by the loader) when that remainder holds at least
     a quarter of a clip or is the whole file;
  5. writes the clips as 32-bit float WAVs ROOT/NAME/data/SPLIT/K.wav (K counts up in file order) and the marker
     ROOT/NAME/hrnn_dataset.json, which registers NAME: it holds the DatasetSpec (length L, the quantization,
     layout "splits"), so `hrnn train --dataset NAME`, `hrnn eval`, `hrnn sample` and the notebooks' dataset
     parameters accept it (hrnn.data.specs.get_spec).

As for every dataset, it is built in a scratch folder and moved into place when complete; rerunning it is a no-op
while the source files (names, sizes, modification times), the options and the built clips (hrnn.data.manifest)
are unchanged, and rebuilds otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
from natsort import natsorted
from tqdm.auto import tqdm

from hrnn.data.audio import AudioError, read_audio
from hrnn.data.layout import ratio_bounds
from hrnn.data.manifest import DataWarning, warn_if_changed, write_manifest
from hrnn.data.quantization import check_method
from hrnn.data.home import dataset_home, install, read_marker, scratch_dir
from hrnn.data.specs import DATASETS, MARKER, SAMPLE_RATE, SPLITS, DataError, DatasetSpec

# Suffixes of the files taken as audio: libsndfile's formats, and those librosa decodes through audioread.
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                            ".au", ".snd", ".caf", ".w64", ".rf64", ".m4a", ".aac", ".wma"})
DEFAULT_CLIP_SECONDS = 8.0  # Beethoven's clips
MIN_CLIP_SECONDS = 0.01  # 160 samples: one block of the paper's pooling
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RESERVED_NAMES = frozenset({"folder", "classifiers"})  # the CLI's pseudo-name; ROOT/classifiers (hrnn.metrics)
LAYOUT_DIR = "data"


def split_counts(n: int) -> tuple[int, int, int]:
  """(train, valid, test) file counts of n >= 3 files: the "clips" layout's int(0.88 n) / int(0.94 n) bounds,
  with at least one file in valid and in test."""
  first, second = ratio_bounds(n)
  valid, test = max(1, second - first), max(1, n - second)
  return n - valid - test, valid, test


def cut(x: np.ndarray, length: int) -> list[np.ndarray]:
  """Consecutive clips of `length` samples; the remainder is a last clip when it holds >= length / 4 samples or
  is all there is."""
  pieces = [x[i:i + length] for i in range(0, len(x), length)]
  if len(pieces) > 1 and 4 * len(pieces[-1]) < length:
    pieces.pop()
  return pieces


def find_audio(source: Path) -> tuple[list[Path], list[Path]]:
  """(audio files, other files) under `source`, natsorted by relative path; hidden files and folders skipped."""
  audio, other = [], []
  for path in source.rglob("*"):
    relative = path.relative_to(source)
    if any(part.startswith(".") for part in relative.parts) or not path.is_file():
      continue
    (audio if path.suffix.lower() in AUDIO_SUFFIXES else other).append(path)
  key = lambda p: p.relative_to(source).as_posix()
  return natsorted(audio, key=key), natsorted(other, key=key)


def _fingerprint(source: Path, files: list[Path], quantization: str, clip_seconds: float) -> str:
  """Changes whenever a source file is added, removed, resized or modified, or an option changes."""
  stats = [(p.relative_to(source).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
  return hashlib.sha256(json.dumps([stats, quantization, clip_seconds]).encode()).hexdigest()


def _check_name(name: str) -> None:
  if name in DATASETS:
    raise DataError(f"--name {name}: the name of a built-in dataset; choose another name for your own audio")
  if name in RESERVED_NAMES or not NAME_PATTERN.fullmatch(name or ""):
    raise DataError(f"--name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit, "
                    f"and none of {', '.join(sorted(RESERVED_NAMES))}")


def _check_source(source: Path, home: Path) -> None:
  if not source.is_dir():
    raise DataError(f"--source {source}: folder does not exist")
  home = home.resolve()
  if source == home or home in source.parents or source in home.parents:
    raise DataError(f"--source {source}: overlaps the dataset folder {home}; keep your audio outside the data root")


def prepare_folder(source: str | Path, name: str, *, quantization: str = "mu-law",
                   clip_seconds: float = DEFAULT_CLIP_SECONDS, root: str | Path | None = None) -> Path:
  """Builds (or finds up to date) the dataset NAME from the audio files under `source` (module docstring).

  Args:
    source: a folder tree of audio files (WAV, FLAC, OGG, MP3, ...: any rate, mono or stereo).
    name: the dataset's name (not a built-in one); it lives in ROOT/NAME.
    quantization: "mu-law" or "linear", the 8-bit tokens the dataset is read as.
    clip_seconds: length of the clips (the dataset's tokens per example: round(clip_seconds * 16000)).
    root: data root (default `default_root()`).
  Returns:
    The layout folder ROOT/NAME/data.
  Raises:
    DataError: naming the culprit: a built-in or malformed name, a missing or empty source folder, no audio or
      no readable audio in it, fewer than 3 readable files, a bad quantization or clip length.
  Warns:
    DataWarning: one per file skipped, naming it and why.
  """
  _check_name(name)
  quantization = check_method(quantization)
  if not (math.isfinite(clip_seconds) and clip_seconds >= MIN_CLIP_SECONDS):
    raise DataError(f"--clip-seconds {clip_seconds}: must be a finite number of seconds >= {MIN_CLIP_SECONDS}")
  source = Path(source).expanduser().resolve()
  home = dataset_home(name, root)
  _check_source(source, home)
  files, other = find_audio(source)
  if not files:
    found = (f"only {len(other)} other file(s), e.g. {other[0].relative_to(source)}" if other
             else "it is empty")
    raise DataError(f"--source {source}: holds no audio files ({found}); put WAV, FLAC, OGG or MP3 files in it")
  fingerprint = _fingerprint(source, files, quantization, clip_seconds)
  marker = read_marker(home)
  if marker is not None and marker.get("source") == "folder" and marker.get("fingerprint") == fingerprint \
      and marker.get("source_dir") == str(source) and not warn_if_changed(name, home, "rebuilding it"):
    return home / marker["layout_dir"]
  scratch = scratch_dir(home.parent / f".{home.name}.partial")
  try:
    marker = _build(source, name, files, other, quantization, clip_seconds, fingerprint, scratch)
    (scratch / MARKER).write_text(json.dumps(marker, indent=1))
    write_manifest(scratch, scratch / LAYOUT_DIR)
    install(scratch, home)
  except BaseException:
    shutil.rmtree(scratch, ignore_errors=True)
    raise
  return home / LAYOUT_DIR


def _build(source: Path, name: str, files: list[Path], other: list[Path], quantization: str, clip_seconds: float,
           fingerprint: str, scratch: Path) -> dict:
  """Decodes and cuts every file into scratch/pieces, then moves the pieces into their splits; the marker."""
  start = time.perf_counter()
  length = round(clip_seconds * SAMPLE_RATE)
  pieces_dir = scratch / "pieces"
  pieces_dir.mkdir()
  readable: list[tuple[str, int, float]] = []  # (relative path, clips, seconds)
  skipped: list[list[str]] = []
  for path in tqdm(files, desc=f"{name}: reading {source}", unit="file", leave=False):
    relative = path.relative_to(source).as_posix()
    try:
      audio = read_audio(path, SAMPLE_RATE)
    except AudioError as e:  # its message starts with the path
      why = str(e).removeprefix(f"{path}: ")
      skipped.append([relative, why])
      warnings.warn(DataWarning(f"{path}: skipped: {why}"), stacklevel=3)
      continue
    k = len(readable)
    pieces = cut(audio, length)
    for j, piece in enumerate(pieces):
      sf.write(str(pieces_dir / f"{k}-{j}.wav"), piece, SAMPLE_RATE, subtype="FLOAT", format="WAV")
    readable.append((relative, len(pieces), len(audio) / SAMPLE_RATE))
  if not readable:
    first, why = skipped[0]
    raise DataError(f"--source {source}: none of its {len(files)} audio file(s) is readable ({first}: {why}); "
                    "replace the files or convert them to WAV or FLAC")
  if len(readable) < len(SPLITS):
    raise DataError(f"--source {source}: {len(readable)} readable audio file(s); the split by file needs at least "
                    f"{len(SPLITS)} (one each for train, valid and test): add files, or cut a long recording into "
                    "several")
  counts = split_counts(len(readable))
  layout, k = scratch / LAYOUT_DIR, 0
  split_files, clips, seconds = {}, {}, {}
  for split, count in zip(SPLITS, counts):
    (layout / split).mkdir(parents=True)
    members = list(range(k, k + count))
    k += count
    clip = 0
    for i in members:
      for j in range(readable[i][1]):
        (pieces_dir / f"{i}-{j}.wav").rename(layout / split / f"{clip}.wav")
        clip += 1
    split_files[split] = [readable[i][0] for i in members]
    clips[split] = clip
    seconds[split] = round(sum(readable[i][2] for i in members), 3)
  pieces_dir.rmdir()
  spec = DatasetSpec(name, length, quantization, "splits",
                     f"own audio from {source}: {len(readable)} files in clips of {clip_seconds:g} s")
  return {"name": name, "source": "folder", "source_dir": str(source), "quantization": quantization,
          "clip_seconds": clip_seconds, "fingerprint": fingerprint, "layout_dir": LAYOUT_DIR,
          "spec": dataclasses.asdict(spec), "files": split_files, "clips": clips, "seconds": seconds,
          "skipped": skipped, "ignored": len(other), "seconds_to_build": round(time.perf_counter() - start, 2)}


def rebuild(name: str, root: str | Path | None = None) -> Path:
  """`prepare(NAME)` of a registered dataset of one's own audio: rebuilt from the source folder its marker names
  when that folder changed; used as it is when the folder is gone (the clips are all in ROOT/NAME)."""
  home = dataset_home(name, root)
  marker = read_marker(home)
  if not Path(marker["source_dir"]).is_dir():
    return home / marker["layout_dir"]
  return prepare_folder(marker["source_dir"], name, quantization=marker["quantization"],
                        clip_seconds=marker["clip_seconds"], root=root)
