"""8-bit audio quantization with SaShiMi's formulas (reference.md section 3).

Every example is min-max scaled on its own, then mapped to one of 256 classes:

  minmax(x, a, b) = a + (b - a) * (x - min x) / (max x - min x + 1e-6)
  q(u)            = floor(u * (256 - 0.01) + 0.005)                     u in [0, 1]

  linear:  token = q(minmax(x, 0, 1));                               decode  y = token / 128 - 1
  mu-law:  x' = minmax(x, -1, 1),  e = sign(x') log1p(255 |x'|) / log1p(255),  token = q((e + 1) / 2)
                                                                    decode  y = token / 128 - 1,
                                                                            sign(y) ((1 + 255)^|y| - 1) / 255

One documented departure: an example whose samples are all equal (a silent clip, max = min) maps to the zero
level `SILENCE_TOKEN` = 128 (decodes to 0.0), where the bare formulas would give token 0, i.e. full-scale -1.
"""

from __future__ import annotations

import numpy as np

from hrnn.errors import HrnnError

METHODS: tuple[str, ...] = ("mu-law", "linear")
NUM_CLASSES = 256
MU = 255
SILENCE_TOKEN = 128  # decodes to 0.0 with both methods


class QuantizationError(HrnnError, ValueError):
  """Unknown quantization method or unusable input."""


def check_method(method: str) -> str:
  """Returns `method` if it is one of METHODS, else raises QuantizationError listing them."""
  if method not in METHODS:
    raise QuantizationError(f"unknown quantization {method!r}; use one of {', '.join(METHODS)}")
  return method


def minmax(x: np.ndarray, low: float, high: float) -> np.ndarray:
  """Per-example min-max scaling over the last axis: low + (high - low) (x - min) / (max - min + 1e-6).

  Args:
    x: float array [..., T]; each row (last axis) is one example.
  Returns:
    float64 array [..., T] in [low, high].
  """
  x = np.asarray(x, np.float64)
  lo = x.min(axis=-1, keepdims=True)
  hi = x.max(axis=-1, keepdims=True)
  return low + (high - low) * (x - lo) / (hi - lo + 1e-6)


def _bucket(u: np.ndarray) -> np.ndarray:
  """q(u) = floor(u (256 - 0.01) + 0.005) for u in [0, 1] -> integers 0..255."""
  return np.floor(u * (NUM_CLASSES - 0.01) + 0.005).astype(np.uint8)


def quantize(x: np.ndarray, method: str) -> np.ndarray:
  """Quantizes audio to 8-bit tokens, each example (last axis) scaled on its own.

  Args:
    x: float audio [..., T] (any scale: the per-example min-max makes int16 / 2^15 and raw floats agree).
    method: "mu-law" or "linear".
  Returns:
    uint8 tokens [..., T]. Constant examples (max = min) give SILENCE_TOKEN everywhere.
  """
  check_method(method)
  x = np.asarray(x)
  if x.ndim == 0 or x.shape[-1] == 0:
    raise QuantizationError(f"cannot quantize an empty example (shape {x.shape})")
  if method == "linear":
    tokens = _bucket(minmax(x, 0.0, 1.0))
  else:
    scaled = minmax(x, -1.0, 1.0)
    encoded = np.sign(scaled) * np.log1p(MU * np.abs(scaled)) / np.log1p(MU)
    tokens = _bucket((encoded + 1.0) / 2.0)
  silent = np.ptp(x, axis=-1, keepdims=True) == 0
  return np.where(silent, np.uint8(SILENCE_TOKEN), tokens)


def dequantize(tokens: np.ndarray, method: str) -> np.ndarray:
  """Decodes 8-bit tokens back to float audio in [-1, 1].

  Args:
    tokens: integer array [...] with values 0..255.
    method: "mu-law" or "linear".
  Returns:
    float32 array [...]: y = token / 128 - 1, then for mu-law sign(y) ((1 + mu)^|y| - 1) / mu.
  """
  check_method(method)
  y = np.asarray(tokens, np.float64) / (NUM_CLASSES // 2) - 1.0
  if method == "mu-law":
    y = np.sign(y) * (np.power(1.0 + MU, np.abs(y)) - 1.0) / MU
  return y.astype(np.float32)
