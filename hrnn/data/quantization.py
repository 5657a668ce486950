"""8-bit audio quantization, bit for bit as SaShiMi's data loaders compute it (the formulas below).

Every min-max unit (by default the whole example) is scaled on its own, then mapped to one of 256 classes:

  minmax(x, a, b) = a + (b - a) (x - min x) / (max x - min x + 1e-6)
  q(u)            = floor(u (256 - 0.01) + 0.005)                          u in [0, 1]

  linear:  token = q(minmax(x, 0, 1));                                     decode  y = token / 128 - 1
  mu-law:  x' = minmax(x, -1, 1),
           e  = sign(x') log1p(255 |x' + 1e-8|) / log1p(255),  token = q((e + 1) / 2)
                                                                          decode  y = token / 128 - 1,
                                                                                  sign(y) ((1 + 255)^|y| - 1) / 255

Bit-identical to SaShiMi's tokens, which takes three things the formulas alone do not say:
  * every step runs in float32, in SaShiMi's order of operations ((b - a) (x - min) first, then the division;
    each constant rounded to float32 before it is used), on audio read as float32 (int16 / 2^15): the 1e-6 is not
    scale-free, so audio must come at that scale, as `hrnn.data.read_audio` returns it;
  * the 1e-8 inside the absolute value of the mu-law (with sign taken of x' itself);
  * a constant unit (silence, a constant, a single sample: max = min) scales to `a` everywhere, so it encodes to
    token 0 (decodes to -1) with both methods. `constant="centred"` gives it `SILENCE_TOKEN` = 128 (decodes to 0)
    instead, an explicit departure from SaShiMi.

The min-max unit: `unit=None` scales each example (the last axis) as a whole, as the paper trained on whole
YouTubeMix minutes; `unit=SASHIMI_CHUNK` scales every 131,072 samples on their own (and the shorter tail on its
own), as SaShiMi's YouTubeMix loader did with its 131,072-sample training examples.
"""

from __future__ import annotations

import numpy as np

from hrnn.errors import HrnnError

METHODS: tuple[str, ...] = ("mu-law", "linear")
CONSTANT_RULES: tuple[str, ...] = ("sashimi", "centred")
NUM_CLASSES = 256
MU = 255
SILENCE_TOKEN = 128  # decodes to 0.0 with both methods: the "centred" rule for constant units, and padding
SASHIMI_CHUNK = 131_072  # SaShiMi's YouTubeMix example length, its min-max unit there

# SaShiMi's constants as float32 (torch rounds a Python scalar to the tensor's dtype before the operation).
_F32 = np.float32
_SCALE_EPS = _F32(1e-6)
_MU_EPS = _F32(1e-8)
_LEVELS = _F32(NUM_CLASSES - 0.01)
_HALF_EPS = _F32(0.01 / 2)
_LOG1P_MU = np.log1p(_F32(MU))


class QuantizationError(HrnnError, ValueError):
  """Unknown quantization method or rule, or unusable input."""


def check_method(method: str) -> str:
  """Returns `method` if it is one of METHODS, else raises QuantizationError listing them."""
  if method not in METHODS:
    raise QuantizationError(f"unknown quantization {method!r}; use one of {', '.join(METHODS)}")
  return method


def check_unit(unit: int | None) -> int | None:
  """Returns the min-max unit if it is None (whole example) or a positive number of samples."""
  if unit is not None and (isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) or unit <= 0):
    raise QuantizationError(f"min-max unit {unit!r}: use None (each example as a whole) or a positive number of "
                            f"samples, e.g. {SASHIMI_CHUNK} (SaShiMi's YouTubeMix chunks)")
  return None if unit is None else int(unit)


def minmax(x: np.ndarray, low: float, high: float) -> np.ndarray:
  """Min-max scaling of each row (last axis) in float32: low + ((high - low) (x - min)) / (max - min + 1e-6).

  Args:
    x: audio [..., T] (cast to float32); each row is one min-max unit.
  Returns:
    float32 [..., T] in [low, high]; a constant row gives `low` everywhere.
  """
  x = np.asarray(x, _F32)
  lo = x.min(axis=-1, keepdims=True)
  hi = x.max(axis=-1, keepdims=True)
  return _F32(low) + (_F32(high - low) * (x - lo)) / ((hi - lo) + _SCALE_EPS)


def _bucket(u: np.ndarray) -> np.ndarray:
  """q(u) = floor(u (256 - 0.01) + 0.005) in float32, u in [0, 1] -> integers 0..255 (truncation = floor here)."""
  return np.clip((u * _LEVELS + _HALF_EPS).astype(np.int64), 0, NUM_CLASSES - 1).astype(np.uint8)


def _encode(x: np.ndarray, method: str, constant: str) -> np.ndarray:
  """Tokens of rows [..., U], each row one min-max unit."""
  if method == "linear":
    tokens = _bucket(minmax(x, 0.0, 1.0))
  else:
    scaled = minmax(x, -1.0, 1.0)
    encoded = np.sign(scaled) * (np.log1p(_F32(MU) * np.abs(scaled + _MU_EPS)) / _LOG1P_MU)
    tokens = _bucket((encoded + _F32(1)) / _F32(2))
  if constant == "centred":
    x = np.asarray(x, _F32)
    flat = x.max(axis=-1, keepdims=True) == x.min(axis=-1, keepdims=True)
    tokens = np.where(flat, np.uint8(SILENCE_TOKEN), tokens)
  return tokens


def quantize(x: np.ndarray, method: str, *, unit: int | None = None, constant: str = "sashimi") -> np.ndarray:
  """Quantizes audio to 8-bit tokens as SaShiMi does (module docstring).

  Args:
    x: float audio [..., T] at the scale `hrnn.data.read_audio` returns (int16 / 2^15 for 16-bit PCM); cast to
      float32, as SaShiMi's loaders read it.
    method: "mu-law" or "linear".
    unit: the min-max unit: None = each example (last axis) as a whole; an integer = consecutive pieces of that
      many samples, each scaled on its own (the last, shorter piece too); SASHIMI_CHUNK for SaShiMi's YouTubeMix.
    constant: "sashimi" (a constant unit encodes to token 0, as SaShiMi's formulas give) or "centred" (to 128).
  Returns:
    uint8 tokens [..., T].
  """
  check_method(method)
  unit = check_unit(unit)
  if constant not in CONSTANT_RULES:
    raise QuantizationError(f"unknown constant-clip rule {constant!r}; use one of {', '.join(CONSTANT_RULES)}")
  x = np.asarray(x)
  if x.ndim == 0 or x.shape[-1] == 0:
    raise QuantizationError(f"cannot quantize an empty example (shape {x.shape})")
  bad = np.size(x) - np.count_nonzero(np.isfinite(x))
  if bad:
    raise QuantizationError(f"cannot quantize audio holding NaN or infinite values ({bad} of them)")
  length = x.shape[-1]
  if unit is None or unit >= length:
    return _encode(x, method, constant)
  whole = length - length % unit
  pieces = x[..., :whole].reshape(*x.shape[:-1], whole // unit, unit)
  tokens = [_encode(pieces, method, constant).reshape(*x.shape[:-1], whole)]
  if whole < length:
    tokens.append(_encode(x[..., whole:], method, constant))
  return np.concatenate(tokens, axis=-1)


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
