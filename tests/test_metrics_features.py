"""SaShiMi's log-mel classifier input."""

import librosa
import numpy as np
import pytest

from hrnn.metrics import features


def test_log_mel_matches_librosa_power_to_db_ref_max_per_clip():
  rng = np.random.default_rng(0)
  t = np.arange(16_000) / 16_000
  waves = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.01 * rng.normal(size=16_000),
                    np.sin(2 * np.pi * 3000 * t) * np.exp(-5 * t)]).astype(np.float32)
  out = features.log_mel(waves, batch_size=2)  # two librosa calls
  assert out.shape == (3, 32, 32) and out.dtype == np.float32
  for wave, got in zip(waves, out):
    power = librosa.feature.melspectrogram(y=wave, sr=16_000, n_mels=32, n_fft=2048, hop_length=512,
                                           window="hann", center=True, pad_mode="reflect", power=2.0)
    np.testing.assert_allclose(got, librosa.power_to_db(power, ref=np.max), atol=1e-4)
    assert got.max() == 0.0 and got.min() >= -80.0
  np.testing.assert_array_equal(features.log_mel(waves[1]), out[1])


def test_log_mel_of_silence_is_defined():
  out = features.log_mel(np.zeros(16_000, np.float32))
  np.testing.assert_array_equal(out, np.zeros((32, 32)))


def test_log_mel_is_invariant_to_gain():
  wave = np.random.default_rng(1).normal(size=16_000).astype(np.float32) * 0.1
  np.testing.assert_allclose(features.log_mel(wave), features.log_mel(3 * wave), atol=1e-3)


def test_fix_length_pads_and_cuts():
  np.testing.assert_array_equal(features.fix_length(np.ones(3), 5), [1, 1, 1, 0, 0])
  np.testing.assert_array_equal(features.fix_length(np.arange(7), 5), np.arange(5))
  with pytest.raises(ValueError, match="fix_length"):
    features.log_mel(np.zeros((2, 15_999)))
