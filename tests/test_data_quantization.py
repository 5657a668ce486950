"""8-bit quantization against values worked by hand from SaShiMi's formulas, and against those formulas written
out in torch (float32), the way SaShiMi's loaders evaluate them."""

import math

import numpy as np
import pytest
import torch

from hrnn.data import QuantizationError, dequantize, quantize
from hrnn.data.quantization import SASHIMI_CHUNK, SILENCE_TOKEN, minmax


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


def test_float32_arithmetic_hand_computed():
  # max - min = 100, and 100 + 1e-6 rounds to 100 in float32 (its spacing there is 2^-17 = 7.6e-6), so the middle
  # sample scales to x' = -1 + 2 * 50 / 100 = 0 exactly: e = 0, u = 0.5, 0.5 * 255.99 + 0.005 = 128.0 -> 128.
  # In float64 x' = -1 + 100 / 100.000001 = -1e-8 instead: e = -4.6e-7, u * 255.99 + 0.005 = 127.99994 -> 127.
  assert quantize(np.array([-50.0, 0.0, 50.0]), "mu-law").tolist() == [0, 128, 255]


def test_mu_law_epsilon_hand_computed():
  # min -32, max 32: 64 + 1e-6 = 64 in float32, so v = -20084 / 2^18 scales exactly to x' = -1 + (v + 32) / 32
  # = -20084 / 2^23 = -0.00239419937. Tokens 116 | 117 meet where u = (117 - 0.005) / 255.99, i.e. e = -0.08594086,
  # i.e. |x'| = (256^0.08594086 - 1) / 255 = 0.00239419730. With SaShiMi's |x' + 1e-8| = 0.00239418937 (below it):
  # e = -0.08594063, u * 255.99 + 0.005 = 117.00003 -> 117. Without the epsilon, |x'| (above it) gives 116.99999 -> 116.
  v = -20084 / 2 ** 18
  assert quantize(np.array([-32.0, v, 32.0]), "mu-law").tolist() == [0, 117, 255]


def test_minmax_formula():
  x = np.array([2.0, 4.0, 6.0])
  # float32: within one spacing of 1 (1.2e-7) of the exact values
  np.testing.assert_allclose(minmax(x, -1, 1), [-1.0, -1 + 2 * 2 / (4 + 1e-6), -1 + 2 * 4 / (4 + 1e-6)], atol=1.2e-7)
  assert minmax(x, -1, 1).dtype == np.float32


@pytest.mark.parametrize("method", ["mu-law", "linear"])
def test_constant_clips_encode_to_token_0_as_sashimi(method):
  # max = min: (x - min) / (0 + 1e-6) = 0, so x' = a everywhere. Linear: u = 0 -> floor(0.005) = 0. Mu-law:
  # x' = -1, |-1 + 1e-8| = 1 in float32, e = -log1p(255) / log1p(255) = -1, u = 0 -> 0. Decodes to -1.
  for x in (np.full(50, 0.25), np.zeros(16_000), np.array([0.7])):
    tokens = quantize(x, method)
    assert (tokens == 0).all()
    assert (dequantize(tokens, method) == -1.0).all()
  centred = quantize(np.full(50, 0.25), method, constant="centred")
  assert (centred == SILENCE_TOKEN).all() and (dequantize(centred, method) == 0.0).all()
  # The centred rule changes constant examples only.
  x = np.array([0.0, 1.0, 2.0, 3.0])
  assert (quantize(x, method, constant="centred") == quantize(x, method)).all()


def test_min_max_unit_scales_each_piece_on_its_own():
  x = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 10.0, 10.0, 10.0, 5.0, 7.0])
  # pieces of 4: [0, 1, 2, 3] -> 0, 85, 170, 255 (above); [10] * 4 is constant -> 0; the tail [5, 7] on its own:
  # u = 0 and 2 / (2 + 1e-6) = 0.9999995 -> floor(255.99 * 0.9999995 + 0.005) = 255.
  assert quantize(x, "linear", unit=4).tolist() == [0, 85, 170, 255, 0, 0, 0, 0, 0, 255]
  assert quantize(x, "linear", unit=4, constant="centred").tolist() == [0, 85, 170, 255] + [128] * 4 + [0, 255]
  # The whole example: min 0, max 10, u = x / (10 + 1e-6); e.g. 3 -> floor(76.797 + 0.005) = 76, 5 -> 127.
  whole = quantize(x, "linear")
  assert whole.tolist() == [0, 25, 51, 76, 255, 255, 255, 255, 127, 179]
  assert (quantize(x, "linear", unit=10) == whole).all() and (quantize(x, "linear", unit=64) == whole).all()


def _sashimi_tokens(x: np.ndarray, method: str) -> np.ndarray:
  """SaShiMi's formulas on one min-max unit, written out in torch float32 in their order of operations."""
  t = torch.from_numpy(np.asarray(x, np.float32))[None, :, None]  # [1, L, 1] as its loaders hold an example
  low, high = (-1, 1) if method == "mu-law" else (0, 1)
  lo, hi = torch.amin(t, dim=(1, 2), keepdim=True), torch.amax(t, dim=(1, 2), keepdim=True)
  t = low + (high - low) * (t - lo) / (hi - lo + 1e-6)
  if method == "mu-law":
    mu = torch.tensor(255)
    t = torch.sign(t) * (torch.log1p(mu * torch.abs(t + 1e-8)) / torch.log1p(mu))
    t = (t + 1) / 2
  t = t * (256 - 0.01)
  t = t + 0.01 / 2
  return t.long()[0, :, 0].numpy()


@pytest.mark.parametrize("method", ["mu-law", "linear"])
def test_bit_identical_to_the_formulas_in_float32_on_16_bit_audio(method):
  rng = np.random.default_rng(0)
  rows = []
  for amplitude in (30_000, 3_000, 300, 30):  # loud to very quiet 16-bit audio, read as int16 / 2^15
    pcm = np.clip(rng.normal(0, amplitude / 3, 200_000), -32768, 32767).astype(np.int16)
    rows.append(pcm.astype(np.float32) / 2 ** 15)
  x = np.stack(rows)
  np.testing.assert_array_equal(quantize(x, method), np.stack([_sashimi_tokens(r, method) for r in x]))
  # SaShiMi's YouTubeMix chunks: every 131,072 samples on their own, the shorter tail too.
  long = np.concatenate(rows)[:2 * SASHIMI_CHUNK + 1_000]
  pieces = [long[i:i + SASHIMI_CHUNK] for i in range(0, len(long), SASHIMI_CHUNK)]
  np.testing.assert_array_equal(quantize(long, method, unit=SASHIMI_CHUNK),
                                np.concatenate([_sashimi_tokens(p, method) for p in pieces]))


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
  assert (quantize(np.stack([a, b]), "mu-law", unit=30)[1] == quantize(b, "mu-law", unit=30)).all()


def test_bad_input():
  with pytest.raises(QuantizationError, match="unknown quantization 'ulaw'"):
    quantize(np.zeros(3), "ulaw")
  with pytest.raises(QuantizationError, match="empty"):
    quantize(np.zeros(0), "linear")
  with pytest.raises(QuantizationError, match="NaN or infinite values \\(1 of them\\)"):
    quantize(np.array([0.0, np.nan, 1.0]), "mu-law")
  with pytest.raises(QuantizationError, match="min-max unit 0"):
    quantize(np.zeros(3), "mu-law", unit=0)
  with pytest.raises(QuantizationError, match="constant-clip rule 'middle'"):
    quantize(np.zeros(3), "mu-law", constant="middle")
  assert math.isclose(float(dequantize(np.array([255]), "linear")[0]), 127 / 128)


def test_load_split_min_max_unit_builds_its_own_token_cache(tmp_path):
  from hrnn.data import load_split, prepare, read_audio

  prepare("sc09-espeak", size="tiny", root=tmp_path)
  whole = load_split("sc09-espeak", "test", root=tmp_path)
  pieces = load_split("sc09-espeak", "test", root=tmp_path, minmax_unit=4_000)
  assert whole.cache_files[0]["filename"] != pieces.cache_files[0]["filename"]  # the unit is in the cache key
  for w, p in zip(whole, pieces):
    audio = read_audio(w["path"])
    assert (w["tokens"] == quantize(audio, "mu-law")).all()
    assert (p["tokens"] == quantize(audio, "mu-law", unit=4_000)).all()
  assert any((w["tokens"] != p["tokens"]).any() for w, p in zip(whole, pieces))
  with pytest.raises(QuantizationError, match="min-max unit -1"):
    load_split("sc09-espeak", "test", root=tmp_path, minmax_unit=-1)
