"""SaShiMi 8-bit quantization (reference.md section 3) against hand-computed values."""

import math

import numpy as np
import pytest

from hrnn.data import QuantizationError, dequantize, quantize
from hrnn.data.quantization import SILENCE_TOKEN, minmax


def test_linear_hand_computed():
  # min 0, max 3: u = x / (3 + 1e-6) = 0, 0.3333332, 0.6666664, 0.9999997; q = floor(u * 255.99 + 0.005)
  assert quantize(np.array([0.0, 1.0, 2.0, 3.0]), "linear").tolist() == [0, 85, 170, 255]
  np.testing.assert_allclose(dequantize(np.array([0, 85, 128, 170, 255]), "linear"),
                             [-1.0, 85 / 128 - 1, 0.0, 170 / 128 - 1, 255 / 128 - 1])


def test_mu_law_hand_computed():
  # x' = minmax(x, -1, 1); x = 0.5 -> x' = 0.49999925, e = ln(1 + 255 x') / ln 256 = 0.875699, u = 0.937850,
  # q = floor(240.08) = 240; x = 0 -> x' = -5e-7, e = -2.3e-5, q = floor(127.997) = 127.
  assert quantize(np.array([-1.0, 0.0, 0.5, 1.0]), "mu-law").tolist() == [0, 127, 240, 255]
  # decode 240: y = 0.875, (256^0.875 - 1) / 255 = (128 - 1) / 255
  assert dequantize(np.array([240]), "mu-law")[0] == pytest.approx(127 / 255)
  assert dequantize(np.array([16]), "mu-law")[0] == pytest.approx(-(2 ** 7 - 1) / 255)
  assert dequantize(np.array([0, 128]), "mu-law").tolist() == [-1.0, 0.0]


def test_minmax_formula():
  x = np.array([2.0, 4.0, 6.0])
  np.testing.assert_allclose(minmax(x, -1, 1), [-1.0, -1 + 2 * 2 / (4 + 1e-6), -1 + 2 * 4 / (4 + 1e-6)])


def test_linear_round_trip_is_exact_on_the_grid():
  tokens = np.arange(256)
  assert (quantize(dequantize(tokens, "linear"), "linear") == tokens).all()


def test_mu_law_round_trip_error_bounds():
  x = np.concatenate([[-1.0, 1.0], np.random.default_rng(0).uniform(-1, 1, 20_000)])
  decoded = dequantize(quantize(x, "mu-law"), "mu-law").astype(np.float64)
  # Decoding returns a bin's lower edge; the widest bin, the top one, spans [(256^(127/128) - 1) / 255, 1].
  assert np.abs(decoded - x).max() <= 1 - (256 ** (127 / 128) - 1) / 255 + 1e-6
  small = np.abs(x) < 0.01
  assert np.abs(decoded - x)[small].max() < 0.0015  # fine resolution near zero is mu-law's point
  assert (np.diff(quantize(np.sort(x), "mu-law").astype(int)) >= 0).all()  # monotone


def test_each_row_is_scaled_on_its_own():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=100), 50 * rng.normal(size=100) + 3
  both = quantize(np.stack([a, b]), "mu-law")
  assert (both[0] == quantize(a, "mu-law")).all() and (both[1] == quantize(b, "mu-law")).all()


@pytest.mark.parametrize("method", ["mu-law", "linear"])
def test_silent_clip_maps_to_the_zero_level(method):
  tokens = quantize(np.full(50, 0.25), method)
  assert (tokens == SILENCE_TOKEN).all()
  assert (dequantize(tokens, method) == 0.0).all()


def test_bad_input():
  with pytest.raises(QuantizationError, match="unknown quantization 'ulaw'"):
    quantize(np.zeros(3), "ulaw")
  with pytest.raises(QuantizationError, match="empty"):
    quantize(np.zeros(0), "linear")
  assert math.isclose(float(dequantize(np.array([255]), "linear")[0]), 127 / 128)
