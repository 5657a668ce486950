"""hrnn.pallas: the kernel (interpret mode on CPU) on its own: time blocks, channel blocks, both directions."""

import jax
import numpy as np
import pytest

from hrnn import pallas


def reference(a, b, s0, reverse):
  """float64 s_t = a_t s_{t-1} + b_t (reverse: s_t = a_{t+1} s_{t+1} + b_t, a_T = 1, backwards in time) from s0."""
  a, b, s = (np.asarray(x, np.complex128) for x in (a, b, s0))
  if reverse:
    a = np.concatenate([a[:, 1:], np.ones_like(a[:, :1])], axis=1)
  out = np.empty_like(b)
  for t in (range(a.shape[1] - 1, -1, -1) if reverse else range(a.shape[1])):
    s = a[:, t] * s + b[:, t]
    out[:, t] = s
  return out, s


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.complex64, np.float32])
def test_kernel_matches_reference(reverse, dtype):
  # 300 steps = 3 time blocks of 128 (the last padded); 130 channels = 2 channel blocks (the last padded).
  rng = np.random.default_rng(0)
  shape = (2, 300, 130)
  cast = lambda x: x if dtype == np.complex64 else x.real
  a = cast(rng.uniform(0.5, 1.0, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))).astype(dtype)
  b = cast(rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dtype)
  s0 = cast(rng.normal(size=(2, 130)) + 1j * rng.normal(size=(2, 130))).astype(dtype)
  want, want_final = reference(a, b, s0, reverse)
  states, final = jax.jit(lambda a, b, s0: pallas.scan(a, b, s0, reverse=reverse))(a, b, s0)
  assert states.dtype == dtype and states.shape == shape and final.shape == (2, 130)
  np.testing.assert_allclose(states, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(final, want_final, rtol=1e-5, atol=1e-5)
  none, summary = jax.jit(lambda a, b, s0: pallas.scan(a, b, s0, reverse=reverse, keep_states=False))(a, b, s0)
  assert none is None
  np.testing.assert_allclose(summary, want_final, rtol=1e-5, atol=1e-5)


def test_short_sequence_is_one_block():
  # Fewer steps than BLOCK_TIME: one block of exactly the sequence length, no padding.
  a = np.full((1, 5, 4), 0.5, np.float32)
  states, final = pallas.scan(a, np.ones_like(a), np.zeros((1, 4), np.float32))
  np.testing.assert_allclose(states[0, :, 0], [1.0, 1.5, 1.75, 1.875, 1.9375])
  np.testing.assert_allclose(final[0], np.full(4, 1.9375))
