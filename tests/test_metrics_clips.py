"""Bad sample files: wrong length, wrong rate, silence, corrupt files, empty folders."""

import numpy as np
import pytest
import soundfile as sf

from hrnn.errors import HrnnError
from hrnn.metrics import clips, features


def _tone(n, rate=16_000, freq=440.0):
  return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def test_bad_files_are_fixed_and_counted(tmp_path):
  sf.write(tmp_path / "ok.wav", _tone(16_000), 16_000, subtype="PCM_16")
  sf.write(tmp_path / "short.wav", _tone(9_000), 16_000, subtype="PCM_16")
  sf.write(tmp_path / "long.wav", _tone(20_000), 16_000, subtype="PCM_16")
  sf.write(tmp_path / "rate.wav", _tone(22_050, rate=22_050), 22_050, subtype="PCM_16")  # 1 s at 22.05 kHz
  sf.write(tmp_path / "silent.wav", np.zeros(16_000, np.float32), 16_000, subtype="PCM_16")
  sf.write(tmp_path / "stereo.wav", np.stack([_tone(16_000)] * 2, axis=1), 16_000, subtype="PCM_16")
  files = clips.sample_files(tmp_path)
  assert [f.name for f in files] == ["long.wav", "ok.wav", "rate.wav", "short.wav", "silent.wav", "stereo.wav"]
  waves, report = clips.read_clips(files)
  assert waves.shape == (6, 16_000)
  assert report == clips.ClipReport(files=6, resampled=1, padded=1, cut=1, silent=1)
  np.testing.assert_array_equal(waves[3, 9_000:], 0)  # zero padding
  np.testing.assert_allclose(waves[0], waves[1], atol=1e-4)  # cut to the first second of the same tone
  np.testing.assert_allclose(waves[2], waves[1], atol=2e-2)  # resampled 440 Hz tone
  feats, _ = clips.clip_features(files)
  assert feats.shape == (6, 32, 32) and np.isfinite(feats).all()
  np.testing.assert_array_equal(feats[4], np.zeros(features.FEATURE_SHAPE))  # silence: all 0 dB


def test_natural_order_and_audio_suffixes_only(tmp_path):
  for name in ("sample_10.wav", "sample_2.wav", "sample_1.WAV", "notes.txt"):
    (tmp_path / name).touch()
  assert [f.name for f in clips.sample_files(tmp_path)] == ["sample_1.WAV", "sample_2.wav", "sample_10.wav"]


def test_unusable_inputs_raise_errors_naming_them(tmp_path):
  with pytest.raises(clips.ClipError, match="does not exist"):
    clips.sample_files(tmp_path / "nope")
  with pytest.raises(clips.ClipError, match="no audio files"):
    clips.sample_files(tmp_path)
  (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
  with pytest.raises(HrnnError, match="broken.wav"):
    clips.read_clips([tmp_path / "broken.wav"])
  sf.write(tmp_path / "nan.wav", np.full(100, np.nan, np.float32), 16_000, subtype="FLOAT")
  with pytest.raises(HrnnError, match="nan.wav.*NaN"):
    clips.read_clips([tmp_path / "nan.wav"])
