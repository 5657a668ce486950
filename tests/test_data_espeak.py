"""sc09-espeak: generated in SC09's exact layout, deterministic, voices disjoint, read by the SC09 loader."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hrnn.data import DIGITS, SPLITS, DataWarning, batches, load_split, prepare
from hrnn.data.espeak import PRESETS, speaker_id, speakers_by_split
from hrnn.data.layout import speaker
from hrnn.data.sources import MARKER


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("espeak")
  prepare("sc09-espeak", size="tiny", root=root, seed=0)
  return root


def test_layout_matches_sc09(root):
  layout = root / "sc09-espeak" / "data"
  assert sorted(p.name for p in layout.iterdir()) == sorted([*DIGITS, "testing_list.txt", "validation_list.txt"])
  marker = json.loads((root / "sc09-espeak" / MARKER).read_text())
  size = PRESETS["sc09-espeak"]["tiny"]
  assert sum(marker["clips"].values()) == size.speakers * size.takes * 10
  for name in ("validation_list.txt", "testing_list.txt"):
    for line in (layout / name).read_text().splitlines():
      digit, file = line.split("/")
      assert digit in DIGITS and (layout / line).is_file() and "_nohash_" in file
  for path in layout.glob("*/*.wav"):
    info = sf.info(str(path))
    assert (info.frames, info.samplerate, info.channels, info.subtype) == (16000, 16000, 1, "PCM_16")


def test_loader_splits_voices_and_labels(root):
  marker = json.loads((root / "sc09-espeak" / MARKER).read_text())
  splits = {s: load_split("sc09-espeak", s, root=root) for s in SPLITS}
  assert {s: len(ds) for s, ds in splits.items()} == marker["clips"]
  voices = {s: {speaker(Path(p)) for p in ds["path"]} for s, ds in splits.items()}
  assert {s: len(v) for s, v in voices.items()} == marker["speakers"]
  assert not (voices["train"] & voices["valid"] or voices["train"] & voices["test"] or voices["valid"] & voices["test"])
  for ds in splits.values():  # every speaker says every digit; label = folder
    assert np.bincount(ds["label"]).tolist() == [len(ds) // 10] * 10
    assert all(DIGITS[label] == Path(p).parent.name for label, p in zip(ds["label"], ds["path"]))
  batch = next(batches(splits["valid"], 4, 16000, seed=0, epoch=0))
  assert batch["mask"].all()  # padded or cut to exactly one second


def test_clips_hold_a_word_over_a_quiet_floor(root):
  from hrnn.data import read_audio
  for path in sorted((root / "sc09-espeak" / "data" / "seven").glob("*.wav"))[:3]:
    x = read_audio(path)
    frame_rms = np.sqrt((x.reshape(50, 320) ** 2).mean(1))
    assert frame_rms.max() > 0.02 and frame_rms.min() < 0.003  # speech, and a near-silent stretch


def test_deterministic_from_the_seed(root, tmp_path):
  again = prepare("sc09-espeak", size="tiny", root=tmp_path, seed=0)
  first = root / "sc09-espeak" / "data"
  files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
  assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
  assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)
  voices = ["en-us+m1", "en-us+f2", "en-gb+m3", "en-029+f1", "en-gb+klatt", "en-us+m2"]
  size = PRESETS["sc09-espeak"]["tiny"]
  from dataclasses import replace
  small = replace(size, speakers=6)
  draw = lambda seed: speakers_by_split(voices, small, np.random.default_rng(seed))
  assert draw(0) == draw(0) and any(draw(0) != draw(s) for s in range(1, 4))
  assert speaker_id("en-us+m1") == speaker_id("en-us+m1") != speaker_id("en-us+m2")


def test_prepare_is_a_no_op_when_present_and_rebuilds_on_another_seed(root, tmp_path):
  marker = root / "sc09-espeak" / MARKER
  stamp = marker.stat().st_mtime_ns
  assert prepare("sc09-espeak", size="tiny", root=root, seed=0) == root / "sc09-espeak" / "data"
  assert marker.stat().st_mtime_ns == stamp
  prepare("sc09-espeak", size="tiny", root=tmp_path, seed=0)
  # One copy per data root: replacing it says so, and how to get the old copy back.
  with pytest.warns(DataWarning, match=r"sc09-espeak: replacing the tiny copy \(seed 0\) in .* with a tiny one "
                                       r"\(seed 1\); runs trained on the tiny copy need it back \(`hrnn data prepare "
                                       r"sc09-espeak --size tiny --seed 0`\)"):
    prepare("sc09-espeak", size="tiny", root=tmp_path, seed=1)
  rebuilt = json.loads((tmp_path / "sc09-espeak" / MARKER).read_text())
  assert rebuilt["seed"] == 1 and not list(tmp_path.glob(".sc09-espeak.*"))  # no scratch folders left


def test_unknown_size(tmp_path):
  from hrnn.data import DataError
  with pytest.raises(DataError, match="unknown size 'huge' for sc09-espeak; use one of tiny, small, full"):
    prepare("sc09-espeak", size="huge", root=tmp_path)
