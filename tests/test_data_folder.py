"""A dataset of one's own audio: `hrnn data prepare folder` (hrnn.data.folder).

The expected splits and clips below are worked out by hand from the rules in hrnn.data.folder's docstring.
"""

import json

import numpy as np
import pytest
import soundfile as sf

from hrnn import data
from hrnn.cli import main
from hrnn.config import train_config
from hrnn.data.folder import cut, prepare_folder, split_counts
from hrnn.data.manifest import DataWarning

CLIP = 0.5  # seconds: 8,000 samples at 16 kHz


def tone(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
  x = np.random.default_rng(seed).uniform(-0.5, 0.5, (round(seconds * rate), channels)).astype(np.float32)
  return x[:, 0] if channels == 1 else x


def own_tree(top):
  """Five files, natural order a/1.wav, a/2.ogg, a/10.flac, b/x.wav, b/y.wav, plus a note that is not audio.

  At 16 kHz (clips of 8,000 samples): a/1.wav 1.5 s stereo 44.1 kHz -> 24,000 samples, 3 clips; a/2.ogg 0.6 s at
  48 kHz -> 9,600: one clip, its 1,600-sample rest (< 8,000 / 4) dropped; a/10.flac 1 s at 22.05 kHz -> 2 clips;
  b/x.wav 0.25 s -> one clip of 4,000 (the whole file); b/y.wav 0.75 s stereo -> 8,000 + a rest of 4,000 (>= 2,000):
  2 clips. Five files: int(0.88 * 5) = int(0.94 * 5) = 4, so valid gets max(1, 0) = 1 file and test max(1, 1) = 1,
  train the first 3: train clips 3 + 1 + 2 = 6, valid 1 (x), test 2 (y).
  """
  (top / "a").mkdir(parents=True)
  (top / "b").mkdir()
  sf.write(top / "a/1.wav", tone(1.5, 44100, 2, seed=1), 44100)
  sf.write(top / "a/2.ogg", tone(0.6, 48000, seed=2), 48000)
  sf.write(top / "a/10.flac", tone(1.0, 22050, seed=3), 22050)
  sf.write(top / "b/x.wav", tone(0.25, 16000, seed=4), 16000, subtype="FLOAT")
  sf.write(top / "b/y.wav", tone(0.75, 16000, 2, seed=5), 16000, subtype="FLOAT")
  (top / "notes.txt").write_text("not audio")
  return top


def test_split_counts_and_cut_by_hand():
  # n: (int(0.88 n), int(0.94 n)) -> valid max(1, b - a), test max(1, n - b)
  assert split_counts(3) == (1, 1, 1)  # (2, 2)
  assert split_counts(4) == (2, 1, 1)  # (3, 3)
  assert split_counts(10) == (8, 1, 1)  # (8, 9)
  assert split_counts(20) == (17, 1, 2)  # (17, 18)
  assert split_counts(100) == (88, 6, 6)  # Beethoven's bounds
  x = np.arange(25)
  assert [len(p) for p in cut(x, 10)] == [10, 10, 5]  # 5 >= 10 / 4: kept
  assert [len(p) for p in cut(x[:22], 10)] == [10, 10]  # 2 < 10 / 4: dropped
  assert [len(p) for p in cut(x[:3], 10)] == [3]  # the whole file
  assert np.array_equal(np.concatenate(cut(x, 10)), x)


def test_prepare_folder_splits_by_file_and_registers(tmp_path):
  source, root = own_tree(tmp_path / "audio"), tmp_path / "root"
  layout = prepare_folder(source, "mine", clip_seconds=CLIP, root=root)
  assert layout == root / "mine" / "data"
  marker = json.loads((root / "mine" / "hrnn_dataset.json").read_text())
  assert marker["files"] == {"train": ["a/1.wav", "a/2.ogg", "a/10.flac"], "valid": ["b/x.wav"],
                             "test": ["b/y.wav"]}
  assert marker["clips"] == {"train": 6, "valid": 1, "test": 2}
  assert marker["skipped"] == [] and marker["ignored"] == 1
  for split, n in marker["clips"].items():
    assert sorted(p.name for p in (layout / split).iterdir()) == sorted(f"{k}.wav" for k in range(n))
  # Clips are 16 kHz mono slices of the decoded file: exact for the 16 kHz float files, stereo averaged.
  x, rate = sf.read(layout / "valid" / "0.wav", dtype="float32")
  assert rate == 16000 and np.array_equal(x, tone(0.25, 16000, seed=4))
  y = tone(0.75, 16000, 2, seed=5).mean(axis=1, dtype=np.float32)
  assert np.array_equal(sf.read(layout / "test" / "0.wav", dtype="float32")[0], y[:8000])
  assert np.array_equal(sf.read(layout / "test" / "1.wav", dtype="float32")[0], y[8000:])
  lengths = [sf.info(layout / "train" / f"{k}.wav").frames for k in range(6)]
  assert lengths == [8000, 8000, 8000, 8000, 8000, 8000]  # 1.wav: 3 clips; 2.ogg: 1 (rest dropped); 10.flac: 2
  assert sf.info(layout / "train" / "0.wav").channels == 1

  spec = data.get_spec("mine", root)
  assert (spec.length, spec.quantization, spec.layout, spec.own, spec.embedded) == (8000, "mu-law", "splits",
                                                                                     True, False)
  train = data.load_split("mine", "train", root)
  assert len(train) == 6 and list(train["length"]) == [8000] * 6
  test = data.load_split("mine", "test", root)
  assert list(test["length"]) == [8000, 4000]  # the shorter clip is padded (mask 0) by the loader
  config = train_config("smoke", "mine", data_root=str(root))
  assert config.dataset == "mine"

  built = (root / "mine" / "hrnn_dataset.json").stat().st_mtime_ns
  assert data.prepare("mine", root=root) == layout  # registered: prepare(NAME) finds it up to date
  assert prepare_folder(source, "mine", clip_seconds=CLIP, root=root) == layout
  assert (root / "mine" / "hrnn_dataset.json").stat().st_mtime_ns == built


def test_a_changed_source_is_rebuilt_and_linear_is_kept(tmp_path, monkeypatch):
  from hrnn import config
  from hrnn.paper import experiments

  source, root = own_tree(tmp_path / "audio"), tmp_path / "root"
  prepare_folder(source, "mine", quantization="linear", clip_seconds=CLIP, root=root)
  sf.write(source / "b" / "z.flac", tone(0.5, 16000, seed=6), 16000)  # six files: (5, 5) -> 4 / 1 / 1
  monkeypatch.setenv("HRNN_DATA", str(root))
  experiments.prepare_data(config.get_scale("smoke"), "mine")  # a notebook's dataset parameter: rebuilt
  layout = data.prepare("mine", root=root)  # up to date
  marker = json.loads((root / "mine" / "hrnn_dataset.json").read_text())
  assert marker["files"]["valid"] == ["b/y.wav"] and marker["files"]["test"] == ["b/z.flac"]
  assert marker["clips"] == {"train": 7, "valid": 2, "test": 1}
  assert data.get_spec("mine", root).quantization == "linear" and (layout / "test" / "0.wav").is_file()


def test_unreadable_and_nan_files_are_skipped_with_a_warning_naming_each(tmp_path):
  source, root = own_tree(tmp_path / "audio"), tmp_path / "root"
  bad = tone(0.5, 16000, seed=7)
  bad[100] = np.inf
  sf.write(source / "a" / "3.wav", bad, 16000, subtype="FLOAT")
  (source / "a" / "4.flac").write_bytes(b"fLaC but not really")
  with pytest.warns(DataWarning) as caught:
    prepare_folder(source, "mine", clip_seconds=CLIP, root=root)
  messages = [str(w.message) for w in caught]
  assert any(str(source / "a" / "3.wav") in m and "NaN or infinite" in m for m in messages)
  assert any(str(source / "a" / "4.flac") in m and "skipped" in m for m in messages)
  marker = json.loads((root / "mine" / "hrnn_dataset.json").read_text())
  assert [f for f, _ in marker["skipped"]] == ["a/3.wav", "a/4.flac"]
  assert marker["files"]["train"] == ["a/1.wav", "a/2.ogg", "a/10.flac"]  # split over the five readable files


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3")
def test_mp3(tmp_path):
  (tmp_path / "in").mkdir()
  for i in range(3):
    sf.write(tmp_path / "in" / f"{i}.mp3", tone(0.5, 24000, seed=i), 24000)
  layout = prepare_folder(tmp_path / "in", "songs", clip_seconds=CLIP, root=tmp_path / "root")
  assert [len(list((layout / s).glob("*.wav"))) for s in data.SPLITS] == [1, 1, 1]  # 3 files: 1 / 1 / 1


@pytest.mark.parametrize("case, culprit", [
    ("missing", "folder does not exist"),
    ("empty", "holds no audio files (it is empty)"),
    ("text", "holds no audio files (only 1 other file(s), e.g. readme.txt)"),
    ("unreadable", "none of its 3 audio file(s) is readable (0.wav: not readable audio"),
    ("two", "2 readable audio file(s); the split by file needs at least 3"),
])
def test_bad_folders_are_one_error_line_naming_it(tmp_path, capsys, case, culprit):
  source, root = tmp_path / "in", tmp_path / "root"
  if case != "missing":
    source.mkdir()
  if case == "text":
    (source / "readme.txt").write_text("hi")
  for i in range(3 if case == "unreadable" else 0):
    (source / f"{i}.wav").write_bytes(b"RIFF....")
  for i in range(2 if case == "two" else 0):
    sf.write(source / f"{i}.wav", tone(0.5, 16000, seed=i), 16000)
  assert main(["data", "prepare", "folder", "--source", str(source), "--name", "mine", "--root", str(root)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith(f"hrnn data: error: --source {source.resolve()}") and culprit in err[-1]
  assert not (root / "mine").exists() and not list(root.glob(".mine*"))  # nothing half-built left behind


def test_names_and_flags(tmp_path, capsys):
  source = own_tree(tmp_path / "audio")
  base = ["data", "prepare", "folder", "--source", str(source), "--root", str(tmp_path / "root")]
  assert main([*base, "--name", "sc09"]) == 2
  assert "--name sc09: the name of a built-in dataset" in capsys.readouterr().err
  assert main([*base, "--name", "../up"]) == 2
  assert "--name '../up': use letters, digits" in capsys.readouterr().err
  assert main(["data", "prepare", "folder", "--name", "mine"]) == 2
  assert "needs --source DIR" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    main([*base, "--name", "mine", "--clip-seconds", "nan"])
  assert "--clip-seconds" in capsys.readouterr().err
  assert main(["data", "info", "nothing-here", "--root", str(tmp_path / "root")]) == 2
  assert "hrnn data prepare folder --source DIR --name nothing-here" in capsys.readouterr().err

  assert main([*base, "--name", "mine", "--clip-seconds", "0.5", "--quantization", "linear"]) == 0
  out = capsys.readouterr().out
  assert "files train 3, valid 1, test 1; clips train 6, valid 1, test 2; ignored 1 non-audio" in out
  assert main(["data", "info", "mine", "--root", str(tmp_path / "root"), "--json", "--examples", "2"]) == 0
  info = json.loads(capsys.readouterr().out)
  assert info["quantization"] == "linear" and info["length"] == 8000
  assert {s: info["splits"][s]["clips"] for s in data.SPLITS} == {"train": 6, "valid": 1, "test": 2}
