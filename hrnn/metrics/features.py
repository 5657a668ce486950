"""SaShiMi's classifier input: a 32x32 log-mel spectrogram of one second of 16 kHz audio (hrnn.metrics.protocol).

  x        = waveform padded with zeros or cut to 16,000 samples        [16000]
  S        = |STFT_hann(x; n_fft 2048, hop 512, centered)|^2 @ Mel_32    [32 mels, 32 frames]
  features = 10 log10(max(S, 1e-10)) - 10 log10(max(S))                 dB relative to the clip's loudest bin,
             clipped below at -80 dB (librosa's power_to_db(ref=max))

The frame count is 1 + 16000 // 512 = 32. Centering pads by reflection, the default of the librosa releases
SaShiMi used (before 0.9.0); zero padding (pad_mode="constant") is the default since librosa 0.9.0, so hrnn asks
for "reflect" explicitly. A silent clip has S = 0 everywhere, so every bin equals its maximum and the features are
all 0 dB: defined, never NaN, and counted by `hrnn.metrics.clips`.
"""

from __future__ import annotations

import librosa  # lazy itself: its feature and STFT code load on first use
import numpy as np

from hrnn.data.specs import SAMPLE_RATE

CLIP_LENGTH = 16_000  # samples per clip: one second
N_MELS = 32
N_FFT = 2048
HOP_LENGTH = 512
TOP_DB = 80.0
AMIN = 1e-10
FEATURE_SHAPE = (N_MELS, 1 + CLIP_LENGTH // HOP_LENGTH)  # (32, 32)


def fix_length(x: np.ndarray, length: int = CLIP_LENGTH) -> np.ndarray:
  """Zero-pads on the right or cuts to `length` samples: [n] -> [length]."""
  if len(x) >= length:
    return x[:length]
  return np.pad(x, (0, length - len(x)))


def log_mel(waves: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """Log-mel features of clips already fixed to 16,000 samples.

  Args:
    waves: float [N, 16000] (or [16000] for one clip), values in [-1, 1].
    batch_size: clips per librosa call (bounds the STFT's memory).

  Returns:
    float32 [N, 32, 32] (or [32, 32]): dB relative to each clip's maximum, in [-80, 0].
  """
  waves = np.asarray(waves, np.float32)
  single = waves.ndim == 1
  waves = np.atleast_2d(waves)
  if waves.shape[1] != CLIP_LENGTH:
    raise ValueError(f"log_mel expects clips of {CLIP_LENGTH} samples, got shape {waves.shape}; use fix_length")
  out = np.empty((len(waves), *FEATURE_SHAPE), np.float32)
  for start in range(0, len(waves), batch_size):
    power = librosa.feature.melspectrogram(
        y=waves[start:start + batch_size], sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, window="hann",
        center=True, pad_mode="reflect", power=2.0, n_mels=N_MELS)  # [b, 32, 32]
    out[start:start + batch_size] = power_to_db_ref_max(power)
  return out[0] if single else out


def power_to_db_ref_max(power: np.ndarray) -> np.ndarray:
  """librosa.power_to_db(S, ref=np.max) applied to each clip of a batch: [N, M, F] -> [N, M, F]."""
  db = 10.0 * np.log10(np.maximum(power, AMIN))
  ref = 10.0 * np.log10(np.maximum(power.max(axis=(1, 2), keepdims=True), AMIN))
  db = db - ref
  return np.maximum(db, db.max(axis=(1, 2), keepdims=True) - TOP_DB)
