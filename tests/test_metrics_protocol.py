"""score(): SaShiMi's protocol end to end on the tiny embedded sc09-espeak, with bad sample files mixed in."""

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from hrnn.data import load_split, prepare
from hrnn.metrics import classifier as C
from hrnn.metrics import protocol
from hrnn.metrics.clips import ClipError, sample_files
from hrnn.metrics.scores import ScoreError

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """A prepared tiny sc09-espeak, a seeded untrained tiny classifier at the default path, and a samples folder."""
  root = tmp_path_factory.mktemp("data")
  prepare("sc09-espeak", size="tiny", root=root)
  torch.manual_seed(0)
  model = C.ResNeXt(C.classifier_config("tiny")).eval()
  C.save_classifier(protocol.default_classifier_path("sc09-espeak", "cpu", root), model, {"test_accuracy": 0.25})
  samples = tmp_path_factory.mktemp("samples")
  real = [p for split in ("valid", "test") for p in load_split("sc09-espeak", split, root=root)["path"]]
  for i, path in enumerate(real):
    shutil.copy(path, samples / f"sample_{i}.wav")
  tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(24_000) / 24_000)).astype(np.float32)
  sf.write(samples / "bad_rate.wav", tone, 24_000, subtype="PCM_16")  # 1 s at 24 kHz
  sf.write(samples / "bad_short.wav", tone[:5_000], 16_000, subtype="PCM_16")
  sf.write(samples / "bad_silent.wav", np.zeros(16_000, np.float32), 16_000, subtype="PCM_16")
  return root, model, samples, len(real) + 3


def test_score_rows_reference_rows_and_bad_file_counts(world):
  root, _, samples, n_files = world
  result = protocol.score(samples, "sc09-espeak", root=root)
  assert result["classifier"]["test_accuracy"] == 0.25  # found at the default path
  assert list(result["rows"]) == ["train", "test", "samples"]
  assert result["sample_files"] == result["scored"] == n_files and result["selection"] is None
  assert result["clips"]["samples"] == {"files": n_files, "resampled": 1, "padded": 1, "cut": 0, "silent": 1}
  assert result["clips"]["train"]["files"] == len(load_split("sc09-espeak", "train", root=root))
  train = result["rows"]["train"]
  assert abs(train["fid"]) < 1e-4 and abs(train["fid_torch_fidelity"]) < 1e-3  # 0 up to rounding
  for name, row in result["rows"].items():
    assert set(row) == set(protocol.ESTIMATORS), name
    assert row["fid_torch_fidelity"] == pytest.approx(row["fid"], abs=1e-3), name
    assert row["is"] >= 1.0 and row["mis"] >= 1.0 and row["am"] >= 0.0, name
  assert result["rows"]["samples"]["fid"] > 0


def test_likelihood_selection_and_skipped_parts(world):
  root, model, samples, n_files = world
  files = sample_files(samples)
  likelihoods = {f.name: -float(i) for i, f in enumerate(files)}  # natural order = decreasing likelihood
  mis_clips = len(load_split("sc09-espeak", "test", root=root))
  # SaShiMi's scripts written out: NumPy seeded 0 by the mIS of the test split, 10,000 pairs drawn, the tuning
  # half drawn without replacement, the held-out half sorted; rank k (k-th least likely) is file n - 1 - k here.
  state = np.random.RandomState(0)
  for _ in range(10_000):
    state.choice(np.arange(mis_clips), size=2, replace=True)
  half = n_files // 2
  held_out = sorted(set(range(n_files)) - set(state.choice(n_files, size=half, replace=False)))
  assert protocol.select_samples(files, likelihoods, mis_clips=mis_clips) == [
      files[n_files - 1 - rank] for rank in held_out[int(0.40 * half):int(0.95 * half)]]
  result = protocol.score(samples, "sc09-espeak", classifier=model, root=root, likelihoods=likelihoods,
                          band=(0.0, 1.0), reference_rows=False, torch_fidelity=False)
  assert result["scored"] == half >= protocol.MIN_SAMPLES  # positions 0 .. half - 1 of the held-out half
  assert result["selection"] == {"rule": protocol.SELECTION_RULE, "band": [0.0, 1.0], "seed": 0,
                                 "mis_clips": mis_clips, "held_out": n_files - half}
  assert result["classifier"]["source"] == "in-memory classifier"
  assert list(result["rows"]) == ["samples"]
  assert set(result["rows"]["samples"]) == {"fid", "is", "is_textbook", "mis", "am"}


def test_unusable_requests_raise_errors(world, tmp_path):
  root, model, samples, _ = world
  files = sample_files(samples)
  with pytest.raises(ClipError, match="likelihoods missing"):
    protocol.select_samples(files, {files[0].name: 1.0}, mis_clips=10)
  with pytest.raises(ClipError, match="likelihoods for"):
    protocol.select_samples(files, [1.0, 2.0], mis_clips=10)
  nan = {f.name: 0.0 for f in files} | {files[2].name: float("nan")}
  with pytest.raises(ClipError, match=f"log-likelihood of {files[2].name} is nan"):
    protocol.select_samples(files, nan, mis_clips=10)
  ranked = {f.name: float(i) for i, f in enumerate(files)}
  with pytest.raises(ScoreError, match=r"likelihood band \(0.5, 0.52\) of the held-out half .* keeps no clip"):
    protocol.score(samples, "sc09-espeak", classifier=model, root=root, likelihoods=ranked, band=(0.5, 0.52))
  with pytest.raises(ScoreError, match=r"likelihood band \(0.5, 0.4\): need 0 <= LO < HI <= 1"):
    protocol.score(samples, "sc09-espeak", classifier=model, root=root, likelihoods=ranked, band=(0.5, 0.4))
  with pytest.raises(ScoreError, match="batch_size=0: need a positive number"):
    protocol.score(samples, "sc09-espeak", classifier=model, root=root, batch_size=0)
  for f in files[:5]:
    shutil.copy(f, tmp_path / f.name)
  with pytest.raises(ClipError, match="only 5 samples"):
    protocol.score(tmp_path, "sc09-espeak", classifier=model, root=root)
  with pytest.raises(C.ClassifierError, match="train-classifier --dataset sc09-espeak"):
    protocol.score(samples, "sc09-espeak", root=tmp_path)
