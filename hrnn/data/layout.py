"""Which files make up each split, read from a dataset's on-disk layout (see hrnn.data.specs).

The same functions read the real datasets (unpacked from their zip archives or a `--data-dir` copy) and the
embedded ones, so a generated dataset goes through exactly the code path of the real one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from natsort import natsorted

from hrnn.data.specs import DIGITS, SPLIT_BOUNDS, SPLITS, DataError, DatasetSpec, check_split

VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """The files of one split.

  Attributes:
    paths: audio files in loader order.
    labels: digit class 0..9 per file ("sc09" layout), else None.
    missing: entries of a split list whose file does not exist (reported, never silently dropped).
  """

  paths: tuple[Path, ...]
  labels: tuple[int, ...] | None
  missing: tuple[str, ...] = ()


def speaker(path: Path) -> str:
  """SC09 speaker id of a file: the part of its name before `_nohash_` (e.g. 0a2b400e)."""
  return path.name.split("_nohash_")[0]


def ratio_bounds(n: int) -> tuple[int, int]:
  """File-index boundaries (int(0.88 n), int(0.94 n)) of the "clips" layout's train / valid / test split."""
  return int(SPLIT_BOUNDS[0] * n), int(SPLIT_BOUNDS[1] * n)


def _read_list(layout_dir: Path, name: str) -> list[str]:
  path = layout_dir / name
  if not path.is_file():
    raise DataError(f"{path}: split list missing; an SC09-layout folder needs {VALIDATION_LIST} and "
                    f"{TESTING_LIST} beside the digit folders (re-unpack the archive or re-run `hrnn data prepare`)")
  return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def sc09_files(layout_dir: Path, split: str) -> SplitFiles:
  """Files of one split of an SC09-layout folder (digit folders + the two list files)."""
  found = [d for d in DIGITS if (layout_dir / d).is_dir()]
  if len(found) != len(DIGITS):
    absent = [d for d in DIGITS if d not in found]
    raise DataError(f"{layout_dir}: digit folders {', '.join(absent)} missing; expected zero..nine")
  digit_files = {f"{d}/{p.name}" for d in DIGITS for p in (layout_dir / d).glob("*.wav")}
  if not digit_files:
    raise DataError(f"{layout_dir}: the digit folders hold no .wav files")
  lists = {"valid": _read_list(layout_dir, VALIDATION_LIST), "test": _read_list(layout_dir, TESTING_LIST)}
  if split == "train":
    names = digit_files - set(lists["valid"]) - set(lists["test"])
    missing = ()
  else:
    names = set(lists[split]) & digit_files
    missing = tuple(sorted(n for n in lists[split] if n not in digit_files))
  ordered = natsorted(names)
  return SplitFiles(paths=tuple(layout_dir / n for n in ordered),
                    labels=tuple(DIGITS.index(n.split("/")[0]) for n in ordered), missing=missing)


def clip_files(layout_dir: Path, split: str) -> SplitFiles:
  """Files of one split of a "clips" folder: natsorted WAV files cut at ratio_bounds()."""
  files = natsorted(layout_dir.glob("*.wav"), key=lambda p: p.name)
  if not files:
    raise DataError(f"{layout_dir}: no .wav files; expected numbered clips (0.wav, 1.wav, ...)")
  first, second = ratio_bounds(len(files))
  start, stop = {"train": (0, first), "valid": (first, second), "test": (second, len(files))}[split]
  return SplitFiles(paths=tuple(files[start:stop]), labels=None)


def splits_files(layout_dir: Path, split: str) -> SplitFiles:
  """Files of one split of a "splits" folder: the natsorted WAV files of its folder `split/`."""
  absent = [s for s in SPLITS if not (layout_dir / s).is_dir()]
  if absent:
    raise DataError(f"{layout_dir}: split folders {', '.join(absent)} missing; expected {', '.join(SPLITS)} "
                    "(run `hrnn data prepare folder` again)")
  files = natsorted((layout_dir / split).glob("*.wav"), key=lambda p: p.name)
  if not files:
    raise DataError(f"{layout_dir / split}: no .wav files; run `hrnn data prepare folder` again")
  return SplitFiles(paths=tuple(files), labels=None)


def split_files(spec: DatasetSpec, layout_dir: str | Path, split: str) -> SplitFiles:
  """The files of `split` in a dataset folder of `spec.layout`."""
  check_split(split)
  layout_dir = Path(layout_dir)
  if not layout_dir.is_dir():
    raise DataError(f"{layout_dir}: data folder does not exist")
  read = {"sc09": sc09_files, "clips": clip_files, "splits": splits_files}[spec.layout]
  return read(layout_dir, split)


def find_layout_dir(spec: DatasetSpec, top: Path) -> Path:
  """The folder under `top` (itself included) that holds `spec`'s layout: the shallowest one with the SC09
  list file, with WAV files for "clips", with a `train/` folder for "splits". Archives may or may not wrap their
  content in a folder."""
  marker = {"sc09": VALIDATION_LIST, "clips": "*.wav", "splits": "train/"}[spec.layout]
  hits = sorted({p.parent for p in top.rglob(marker.rstrip("/")) if p.is_dir() == marker.endswith("/")},
                key=lambda p: (len(p.parts), str(p)))
  if not hits:
    what = {"sc09": f"{VALIDATION_LIST} (SC09 layout)", "clips": ".wav clips",
            "splits": "train/ valid/ test/ folders"}[spec.layout]
    raise DataError(f"{top}: found no {what} for dataset {spec.name!r}")
  return hits[0]
