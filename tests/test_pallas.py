"""hrnn.ops.pallas: the TPU and GPU kernels (interpret mode on CPU) on their own: time blocks, channel blocks, chunks,
both directions; and the error when a kernel is compiled for a platform it cannot run on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnn.ops import pallas
from hrnn.ops.platforms import PlatformError

KERNELS = {"tpu": pallas.tpu_scan, "gpu": pallas.gpu_scan}


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


def inputs(shape, dtype, seed=0):
  rng = np.random.default_rng(seed)
  cast = lambda x: x if dtype == np.complex64 else x.real
  a = cast(rng.uniform(0.5, 1.0, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))).astype(dtype)
  b = cast(rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dtype)
  s0 = cast(rng.normal(size=shape[::2]) + 1j * rng.normal(size=shape[::2])).astype(dtype)
  return a, b, s0


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.complex64, np.float32])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_kernel_matches_reference(kernel, reverse, dtype, monkeypatch):
  # 43 steps: TPU, 3 time blocks of 16 (the last padded); GPU, 6 chunks of 8 (the last padded). 130 channels: 2
  # TPU lane blocks, 5 GPU channel blocks (the last padded).
  monkeypatch.setattr(pallas, "TPU_BLOCK_TIME", 16)
  shape = (2, 43, 130)
  assert pallas.chunks(*shape) == 6
  a, b, s0 = inputs(shape, dtype)
  want, want_final = reference(a, b, s0, reverse)
  run = lambda keep: jax.jit(lambda a, b, s0: KERNELS[kernel](a, b, s0, reverse=reverse, keep_states=keep,
                                                               interpret=True))(a, b, s0)
  states, final = run(True)
  assert states.dtype == dtype and states.shape == shape and final.shape == (2, 130)
  np.testing.assert_allclose(states, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(final, want_final, rtol=1e-5, atol=1e-5)
  none, summary = run(False)
  assert none is None
  np.testing.assert_allclose(summary, want_final, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_short_sequence(kernel):
  # Fewer steps than a sublane tile (padded to 8 on TPU); h_t = 0.5 h_{t-1} + 1 from 0: 2 - 2^-t.
  a = np.full((1, 5, 4), 0.5, np.float32)
  states, final = KERNELS[kernel](a, np.ones_like(a), np.zeros((1, 4), np.float32), interpret=True)
  np.testing.assert_allclose(states[0, :, 0], [1.0, 1.5, 1.75, 1.875, 1.9375])
  np.testing.assert_allclose(final[0], np.full(4, 1.9375))


def test_gpu_programs_fill_a_gpu():
  # 32 x 128 channels are 128 one-warp programs: time is cut into 32 chunks (4096 programs), at most sqrt(T).
  assert pallas.chunks(32, 16_000, 128) == 32
  assert pallas.chunks(32, 100, 128) == 10
  assert pallas.chunks(4096, 2**16, 128) == 1


@pytest.mark.parametrize("kernel, platform", [("tpu", "cpu"), ("tpu", "cuda"), ("gpu", "cpu"), ("gpu", "tpu")])
def test_compiled_kernel_on_wrong_platform_is_a_clear_error(kernel, platform):
  a = jax.ShapeDtypeStruct((1, 16, 128), jnp.complex64)
  s0 = jax.ShapeDtypeStruct((1, 128), jnp.complex64)
  with pytest.raises(PlatformError, match=f"Pallas {kernel.upper()} kernel .* cannot run on platform {platform}; "
                                          "run it with interpret=True on CPU"):
    jax.jit(KERNELS[kernel]).trace(a, a, s0).lower(lowering_platforms=(platform,))
