"""The dataset registry: the paper's three Hugging Face datasets, the three embedded ones, and the user's own.

Built-in datasets are listed in DATASETS. A dataset made from a folder of the user's audio (`hrnn data prepare
folder`, hrnn.data.folder) is registered by its marker file ROOT/NAME/hrnn_dataset.json, which holds its spec:
`get_spec(name, root)` reads it there, so every command that takes a dataset name accepts it.

Three on-disk layouts:
  "sc09":  folders zero..nine of WAV files plus `validation_list.txt` and `testing_list.txt` (paths relative to the
           layout folder, e.g. `seven/0a2b400e_nohash_0.wav`); train = every digit file in neither list.
  "clips": numbered WAV files in one folder; natsorted, split by the ratios SPLIT_BOUNDS: files
           [0, int(0.88 n)) train, [int(0.88 n), int(0.94 n)) valid, the rest test.
  "splits": one folder per split (`train/`, `valid/`, `test/`) of numbered WAV files (the user's own audio).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Literal

from hrnn.errors import HrnnError

SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_BOUNDS: tuple[float, float] = (0.88, 0.94)  # train / valid / test boundaries of the "clips" layout
DIGITS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SAMPLE_RATE = 16000
MARKER = "hrnn_dataset.json"  # in ROOT/NAME: how a finished dataset was made (and the spec of a user's dataset)


class DataError(HrnnError):
  """A dataset is missing, incomplete or malformed; the message names the file or folder and what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What the loader needs to know about a dataset.

  Attributes:
    name: registry name.
    length: tokens per example; longer files are cut, shorter ones padded with mask 0.
    quantization: default 8-bit quantization, "mu-law" or "linear" (SaShiMi's per-dataset choice).
    layout: "sc09", "clips" or "splits" (module docstring).
    description: one line for `hrnn data info`.
    sample_rate: audio rate every file is read at (other rates are resampled).
    repo_id: Hugging Face dataset repository of a real dataset; None for an embedded (generated) one.
    archive: zip file in that repository.
    gated: the repository requires accepting its terms and a token.
  """

  name: str
  length: int
  quantization: Literal["mu-law", "linear"]
  layout: Literal["sc09", "clips", "splits"]
  description: str
  sample_rate: int = SAMPLE_RATE
  repo_id: str | None = None
  archive: str | None = None
  gated: bool = False

  @property
  def embedded(self) -> bool:
    """True for datasets the kit generates on the machine."""
    return self.repo_id is None and self.name in DATASETS

  @property
  def own(self) -> bool:
    """True for a dataset made from the user's audio folder (`hrnn data prepare folder`)."""
    return self.name not in DATASETS


DATASETS: dict[str, DatasetSpec] = {
    "sc09": DatasetSpec(
        "sc09", 16_000, "mu-law", "sc09", "spoken digits zero..nine, 1 s (Speech Commands subset)",
        repo_id="krandiash/sc09", archive="sc09.zip"),
    "beethoven": DatasetSpec(
        "beethoven", 128_000, "linear", "clips", "Beethoven piano sonatas, 4,328 clips of 8 s",
        repo_id="krandiash/beethoven", archive="beethoven.zip", gated=True),
    "youtubemix": DatasetSpec(
        "youtubemix", 960_512, "mu-law", "clips", "YouTube piano mix, 241 clips of 1 min",
        repo_id="krandiash/youtubemix", archive="youtube_mix.zip", gated=True),
    "sc09-espeak": DatasetSpec(
        "sc09-espeak", 16_000, "mu-law", "sc09",
        "digits zero..nine spoken by espeak-ng voices, 1 s, in SC09's layout (embedded)"),
    "beethoven-piano": DatasetSpec(
        "beethoven-piano", 128_000, "linear", "clips",
        "music21 corpus scores (Beethoven first) rendered to piano, 8 s clips in Beethoven's layout (embedded)"),
    "piano-minute": DatasetSpec(
        "piano-minute", 960_000, "mu-law", "clips",
        "music21 corpus scores rendered to piano, 1 min clips in YouTubeMix's layout (embedded)"),
}
"""Dataset name -> spec. The embedded ones mirror sc09, beethoven and youtubemix in layout and quantization."""


def get_spec(name: str, root: str | Path | None = None) -> DatasetSpec:
  """The spec of a built-in dataset, or of one made from the user's audio and registered in ROOT/NAME's marker
  (ROOT = `root`, else `default_root()`).

  Raises:
    DataError: `name` is neither, listing the built-in datasets and how to register one's own.
  """
  if name in DATASETS:
    return DATASETS[name]
  home = (Path(root).expanduser() if root is not None else default_root()) / name
  path = home / MARKER
  registered = None
  if name and "/" not in name and name not in (".", "..") and path.is_file():
    try:
      registered = json.loads(path.read_text()).get("spec")
    except (json.JSONDecodeError, AttributeError):
      raise DataError(f"{path}: damaged marker file; run `hrnn data prepare folder --name {name} --source DIR` "
                      "again") from None
  if not isinstance(registered, dict):
    raise DataError(f"unknown dataset {name!r} (nothing registered in {home}); built-in datasets: "
                    f"{', '.join(DATASETS)}; register a folder of your own audio with "
                    f"`hrnn data prepare folder --source DIR --name {name}`")
  try:
    return DatasetSpec(**registered)
  except TypeError:
    raise DataError(f"{path}: its spec does not match this version of hrnn; run `hrnn data prepare folder "
                    f"--name {name} --source DIR` again") from None


def check_split(split: str) -> str:
  """Returns `split` if it is one of SPLITS, else raises DataError."""
  if split not in SPLITS:
    raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
  return split


def default_root() -> Path:
  """The data root: $HRNN_DATA if set, else ~/.cache/hrnn/data. Each dataset lives in ROOT/NAME."""
  return Path(os.environ.get("HRNN_DATA") or Path.home() / ".cache" / "hrnn" / "data").expanduser()
