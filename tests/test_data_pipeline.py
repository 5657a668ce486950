"""Layouts, load_split and batches on tiny fake copies of the real layouts (no network, no generators)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from data_fakes import SC09_SPEAKERS, fake_clips, fake_sc09, noise
from hrnn.data import (PAD_TOKEN, DataError, DataWarning, batches, load_split, num_batches, quantize,
                       read_audio, write_wav)
from hrnn.data.layout import ratio_bounds, speaker


@pytest.fixture(autouse=True)
def data_root(monkeypatch, tmp_path):
  """Token caches of --data-dir loads go to $HRNN_DATA: keep them out of the user's cache."""
  monkeypatch.setenv("HRNN_DATA", str(tmp_path / "hrnn-data"))


@pytest.fixture(scope="module")
def sc09_dir(tmp_path_factory):
  return fake_sc09(tmp_path_factory.mktemp("sc09"))


def test_reference_split_boundaries():
  # SaShiMi's splits: Beethoven files 0-3807 / 3808-4067 / 4068-4327, YouTubeMix 0-211 / 212-225 / 226-240
  assert ratio_bounds(4328) == (3808, 4068)
  assert ratio_bounds(241) == (212, 226)


def test_sc09_layout_splits_labels_and_masks(sc09_dir):
  sizes = {split: len(load_split("sc09", split, data_dir=sc09_dir)) for split in ("train", "valid", "test")}
  assert sizes == {"train": 30, "valid": 10, "test": 10}
  ds = load_split("sc09", "valid", data_dir=sc09_dir)
  assert sorted(ds["label"]) == list(range(10))
  assert {speaker(Path(p)) for p in ds["path"]} == set(SC09_SPEAKERS["valid"])
  row = ds[0]
  assert row["tokens"].dtype == np.uint8 and len(row["tokens"]) == row["length"] < 16000
  # the tokens are the file's quantized audio (mu-law, SC09's default)
  assert (row["tokens"] == quantize(read_audio(row["path"]), "mu-law")).all()
  linear = load_split("sc09", "valid", quantization="linear", data_dir=sc09_dir)[0]["tokens"]
  assert (linear == quantize(read_audio(row["path"]), "linear")).all()
  batch = next(batches(ds, 10, 16000, seed=0, epoch=0))
  lengths = np.array(ds["length"])
  assert sorted(batch["mask"].sum(1).astype(int).tolist()) == sorted(lengths.tolist())
  for tokens, mask in zip(batch["tokens"], batch["mask"]):
    n = int(mask.sum())
    assert (mask[:n] == 1).all() and (mask[n:] == 0).all() and (tokens[n:] == PAD_TOKEN).all()


def test_batches_are_deterministic_and_cover_the_epoch(sc09_dir):
  ds = load_split("sc09", "train", data_dir=sc09_dir)
  assert num_batches(ds, 8) == 4
  epoch = list(batches(ds, 8, 16000, seed=3, epoch=1))
  again = list(batches(ds, 8, 16000, seed=3, epoch=1))
  other = list(batches(ds, 8, 16000, seed=3, epoch=2))
  assert len(epoch) == 4 and all(b["tokens"].shape == (8, 16000) and b["tokens"].dtype == np.int32 for b in epoch)
  assert all((a["tokens"] == b["tokens"]).all() for a, b in zip(epoch, again))
  assert any((a["tokens"] != b["tokens"]).any() for a, b in zip(epoch, other))
  # every example exactly once: the last batch is completed with two all-padding rows
  real_rows = [row for b in epoch for row, m in zip(b["tokens"], b["mask"]) if m.any()]
  assert len(real_rows) == 30 and epoch[-1]["mask"].any(1).sum() == 6
  assert len({row.tobytes() for row in real_rows}) == 30
  # resuming from batch 2 yields exactly the remaining batches
  resumed = list(batches(ds, 8, 16000, seed=3, epoch=1, start=2))
  assert len(resumed) == 2 and all((a["tokens"] == b["tokens"]).all() for a, b in zip(epoch[2:], resumed))


def test_host_shards_make_up_the_global_batch(sc09_dir):
  ds = load_split("sc09", "train", data_dir=sc09_dir)
  whole = list(batches(ds, 8, 4000, seed=0, epoch=0))
  parts = [list(batches(ds, 8, 4000, seed=0, epoch=0, shard_index=i, shard_count=4)) for i in range(4)]
  for b, glob in enumerate(whole):
    assert all(p[b]["tokens"].shape == (2, 4000) for p in parts)
    assert (np.concatenate([p[b]["tokens"] for p in parts]) == glob["tokens"]).all()
    assert (np.concatenate([p[b]["mask"] for p in parts]) == glob["mask"]).all()
  with pytest.raises(DataError, match="divisible by shard_count"):
    next(batches(ds, 8, 4000, seed=0, epoch=0, shard_index=0, shard_count=3))


def test_crops(sc09_dir):
  ds = load_split("sc09", "test", data_dir=sc09_dir)
  by_path = {row["path"]: row["tokens"] for row in ds}
  plain = next(batches(ds, 10, 1000, seed=0, epoch=0))
  cropped = next(batches(ds, 10, 1000, seed=0, epoch=0, crop=True))
  assert plain["mask"].all() and cropped["mask"].all()  # every clip is longer than 1000
  order = np.random.default_rng([0, 0]).permutation(len(ds))
  starts = []
  for r, i in enumerate(order):
    full = by_path[ds[int(i)]["path"]]
    assert (plain["tokens"][r] == full[:1000]).all()  # without crop: the start
    hits = [s for s in range(len(full) - 999) if (full[s:s + 1000] == cropped["tokens"][r]).all()]
    starts.append(hits[0])
  assert max(starts) > 0  # crops start at random offsets
  again = next(batches(ds, 10, 1000, seed=0, epoch=0, crop=True))
  assert (again["tokens"] == cropped["tokens"]).all()


def test_clips_layout_split_by_natsorted_ratios(tmp_path):
  fake_clips(tmp_path, 50)
  ds = {s: load_split("beethoven", s, data_dir=tmp_path) for s in ("train", "valid", "test")}
  first, second = ratio_bounds(50)
  assert [len(ds[s]) for s in ds] == [first, second - first, 50 - second] == [44, 3, 3]
  # natural order: 2.wav before 10.wav
  assert [p.rsplit("/", 1)[1] for p in ds["valid"]["path"]] == ["44.wav", "45.wav", "46.wav"]
  assert "label" not in ds["train"].column_names
  row = ds["test"][0]
  assert row["path"].endswith("/47.wav") and row["length"] == 64
  assert (row["tokens"] == quantize(read_audio(row["path"]), "linear")).all()  # Beethoven's default: linear
  assert np.abs(read_audio(row["path"]) - noise(64, 47)).max() <= 1 / 2**15
  batch = next(batches(ds["test"], 4, 100, seed=0, epoch=0))
  assert batch["mask"].sum() == 3 * 64


def test_bad_inputs_are_skipped_and_reported(tmp_path):
  fake_clips(tmp_path, 12)
  (tmp_path / "3.wav").write_bytes(b"junk" * 30)
  data = (tmp_path / "5.wav").read_bytes()
  (tmp_path / "5.wav").write_bytes(data[:-20])
  write_wav(tmp_path / "7.wav", np.zeros(64, np.float32))  # silent: kept, token 0 everywhere as SaShiMi
  with pytest.warns(DataWarning, match=r"skipped 2 unusable file\(s\): .*3.wav: not readable audio.*5.wav: "
                    r"truncated WAV"):
    ds = load_split("beethoven", "train", data_dir=tmp_path)
  assert len(ds) == 8  # int(0.88 * 12) = 10 train files, two of them unusable
  silent = [row for row in ds if row["path"].endswith("/7.wav")][0]
  assert (silent["tokens"] == 0).all()


def test_sc09_layout_errors(tmp_path, sc09_dir):
  copy = tmp_path / "copy"
  shutil.copytree(sc09_dir, copy)
  (copy / "testing_list.txt").unlink()
  with pytest.raises(DataError, match="testing_list.txt: split list missing"):
    load_split("sc09", "train", data_dir=copy)
  (copy / "testing_list.txt").write_text("seven/ffffffff_nohash_0.wav\n")
  with pytest.raises(DataError, match="split 'test' of sc09 has no usable audio files; .*ffffffff_nohash_0.wav: "
                     "listed in testing_list.txt but missing"):
    load_split("sc09", "test", data_dir=copy)
  shutil.rmtree(copy / "seven")
  with pytest.raises(DataError, match="digit folders seven missing"):
    load_split("sc09", "train", data_dir=copy)
  empty = tmp_path / "empty"
  for d in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"):
    (empty / d).mkdir(parents=True)
  (empty / "validation_list.txt").write_text("")
  with pytest.raises(DataError, match="digit folders hold no .wav files"):
    load_split("sc09", "train", data_dir=empty)
  with pytest.raises(DataError, match="empty/zero: found no .wav clips for dataset .beethoven."):
    load_split("beethoven", "train", data_dir=tmp_path / "empty" / "zero")
  with pytest.raises(DataError, match="unknown split 'validation'"):
    load_split("sc09", "validation", data_dir=sc09_dir)
  with pytest.raises(DataError, match="unknown dataset 'sc10'"):
    load_split("sc10", "train", data_dir=sc09_dir)
