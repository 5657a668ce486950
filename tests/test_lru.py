"""CG-LRU layer: initialisation, bounded square root, gates; its step form equals its parallel form."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hrnn.model.lru import CGLRU, BlockDiagonal, recurrence_coefficients, sqrt_bounded_derivative


def make(r_min=0.9, r_max=0.99, seed=0):
  return CGLRU(128, 256, 32, r_min=r_min, r_max=r_max, max_phase=0.1 * math.pi, scan_backend=None,
               rngs=nnx.Rngs(seed))


def test_sqrt_bounded_derivative():
  grad = jax.grad(sqrt_bounded_derivative)
  assert float(sqrt_bounded_derivative(0.25)) == 0.5
  np.testing.assert_allclose(grad(0.25), 1.0)
  np.testing.assert_allclose(grad(0.0), 200.0)  # finite at 0, clipped at the bound
  np.testing.assert_allclose(grad(1e-9), 200.0)
  np.testing.assert_allclose(grad(1.0 / 400.0**2 * 4), 100.0, rtol=1e-5)  # below the bound: exact


def test_initialisation_ranges():
  lru = make()
  r = np.exp(-jax.nn.softplus(lru.a_param[...]))
  assert r.shape == (128,) and r.min() >= 0.9 - 1e-6 and r.max() <= 0.99 + 1e-6
  theta = np.asarray(lru.theta[...])
  assert theta.min() >= 0 and theta.max() <= 0.1 * math.pi
  assert lru.gate_x.w.shape == (32, 8, 4) and lru.gate_x.b.shape == (32, 4)
  np.testing.assert_allclose(np.std(lru.gate_x.w[...]), 1 / math.sqrt(256), rtol=0.1)
  np.testing.assert_allclose(np.std(lru.gate_x.b[...]), 1 / math.sqrt(32), rtol=0.25)


def test_block_diagonal_is_block_diagonal():
  bd = BlockDiagonal(8, 4, 2, rngs=nnx.Rngs(0))
  x = jnp.zeros((1, 8)).at[0, 0].set(1.0)  # only the first input block is non-zero
  y = bd(x) - bd(jnp.zeros((1, 8)))
  assert np.all(np.asarray(y[0, 2:]) == 0) and np.any(np.asarray(y[0, :2]) != 0)


def test_decay_and_input_normalisation():
  lru = make()
  x = jax.random.normal(jax.random.key(0), (2, 10, 128))
  a, b = lru.coefficients(x)
  assert a.dtype == jnp.complex64 and a.shape == (2, 10, 128)
  absa = np.abs(np.asarray(a))
  # |a| = r^(8 g_a) with g_a in (0, 1): strictly inside (r^8, 1).
  r = np.exp(-jax.nn.softplus(np.asarray(lru.a_param[...])))
  assert np.all(absa < 1) and np.all(absa > r**8 - 1e-6)
  # phase = g_a * theta, so within [0, theta]
  phase = np.angle(np.asarray(a))
  assert np.all(phase >= -1e-6) and np.all(phase <= np.asarray(lru.theta[...]) + 1e-6)


def test_coefficients_equal_the_complex_formula_computed_in_real_arithmetic():
  # a = exp(g_a log_decay + i g_a theta), b = sqrt(1 - |a|^2) g_x (u[:n_c] + i u[n_c:]), in float64 complex numpy.
  k = jax.random.split(jax.random.key(5), 5)
  u, gate_x, gate_a = (jax.random.normal(key, shape) for key, shape in zip(k, [(3, 16), (3, 8), (3, 8)]))
  log_decay = -8.0 * jax.random.uniform(k[3], (8,), minval=0.01, maxval=0.1)
  theta = jax.random.uniform(k[4], (8,), maxval=math.pi)
  sig = lambda v: 1.0 / (1.0 + np.exp(-np.asarray(v, np.float64)))
  g_x, g_a = sig(gate_x), sig(gate_a)
  a_want = np.exp(g_a * np.asarray(log_decay) + 1j * g_a * np.asarray(theta))
  u64 = np.asarray(u, np.float64)
  b_want = np.sqrt(1.0 - np.abs(a_want) ** 2) * g_x * (u64[:, :8] + 1j * u64[:, 8:])
  a, b = recurrence_coefficients(u, gate_x, gate_a, log_decay, theta)
  np.testing.assert_allclose(a, a_want, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(b, b_want, rtol=1e-5, atol=1e-6)
  # The arithmetic is real, complex numbers only assembled at the end: on XLA a complex exp and real-times-complex
  # products cost a third more elementwise work per step (the sampling benchmark measures the speed itself).
  jaxpr = jax.make_jaxpr(recurrence_coefficients)(u, gate_x, gate_a, log_decay, theta).jaxpr
  complex_inputs = [str(eqn.primitive) for eqn in jaxpr.eqns
                    if any(jnp.issubdtype(v.aval.dtype, jnp.complexfloating) for v in eqn.invars)]
  assert complex_inputs == [], complex_inputs


def test_recurrence_matches_python_loop():
  lru = make()
  x = jax.random.normal(jax.random.key(1), (1, 12, 128))
  a, b = lru.coefficients(x)
  h = np.zeros((1, 128), np.complex64)
  outs = []
  for t in range(12):
    h = np.asarray(a[:, t]) * h + np.asarray(b[:, t])
    outs.append(lru.readout(jnp.asarray(h)))
  y, h_last = lru(x)
  np.testing.assert_allclose(y, jnp.stack(outs, axis=1), atol=1e-5)
  np.testing.assert_allclose(h_last, h, atol=1e-5)


def test_state_carries_over_and_padding_is_neutral():
  # Two halves, the second started from the first's last state, equal the whole; steps marked invalid (padding)
  # leave the state unchanged.
  lru = make()
  x = jax.random.normal(jax.random.key(2), (2, 20, 128))
  y, h = lru(x)
  y1, h1 = lru(x[:, :12])
  y2, h2 = lru(x[:, 12:], h1)
  np.testing.assert_allclose(jnp.concatenate([y1, y2], axis=1), y, atol=1e-5)
  np.testing.assert_allclose(h2, h, atol=1e-5)
  padded = jnp.concatenate([x, jax.random.normal(jax.random.key(3), (2, 5, 128))], axis=1)
  valid = (jnp.arange(25) < 20).astype(jnp.float32)
  y_pad, h_pad = lru(padded, valid=valid)
  np.testing.assert_allclose(y_pad[:, :20], y, atol=1e-5)
  np.testing.assert_allclose(h_pad, h, atol=1e-5)


def test_step_form_equals_parallel_form():
  # The step form takes u_t = W_u x_t + c_u (the residual block fuses W_u into its own matmul), the fused gate map
  # and the state of the previous step; 9 real steps of 12, the last 3 padding that the parallel state skips.
  lru = make()
  x = jax.random.normal(jax.random.key(4), (2, 12, 128))
  y, h_last = lru(x, valid=(jnp.arange(12) < 9).astype(jnp.float32))
  params = lru.decode_params()
  assert params.gates_w.shape == (32, 8, 8) and params.gates_b.shape == (32, 8)  # both gates, per block
  u, h = lru.in_proj(x), CGLRU.init_state(params, 2)
  assert h.shape == (2, 128) and h.dtype == jnp.complex64
  step = jax.jit(CGLRU.step)
  for t in range(9):
    h, y_t = step(params, h, u[:, t])
    np.testing.assert_allclose(y_t, y[:, t], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(h, h_last, atol=1e-5, rtol=1e-5)
