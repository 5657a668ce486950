"""hrnn.model.pooling: the tap-by-tap pooling equals the grouped convolutions that define it (docs/model.md,
"Pooling"); the step forms equal the parallel forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hrnn.model.pooling import DownPool, UpPool, grouped_taps, left_context


def _conv_down(pool: DownPool, x: jax.Array) -> jax.Array:
  """The definition: a stride-p grouped convolution over x left-padded by p-1 frames."""
  return pool.conv(jnp.concatenate([left_context(x, pool.p - 1, None), x], axis=1))


@pytest.mark.parametrize("groups", [1, 4, 16])
@pytest.mark.parametrize("p", [2, 5])
def test_pools_equal_their_convolutions_values_and_gradients(groups, p):
  width, coarse = 16, 7
  down = DownPool(width, p, groups, rngs=nnx.Rngs(0))
  up = UpPool(width, p, groups, num_blocks=1, rngs=nnx.Rngs(1))
  for pool in (down, up):  # non-zero biases, so that the test sees them
    pool.conv.bias[...] = jax.random.normal(jax.random.key(2), (width,))
  x = jax.random.normal(jax.random.key(3), (3, coarse * p, width))
  c = jax.random.normal(jax.random.key(4), (3, coarse, width))
  cases = [(down, x, lambda m, x: m(x)[0], _conv_down), (up, c, lambda m, c: m(c)[0], lambda m, c: m.conv(c))]
  for pool, inputs, taps, conv in cases:
    np.testing.assert_allclose(taps(pool, inputs), conv(pool, inputs), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda m, v: jnp.sum(jnp.sin(f(m, v)))
    grads = [nnx.grad(loss(f), argnums=(0, 1))(pool, inputs) for f in (taps, conv)]
    for got, want in zip(*(jax.tree.leaves(g) for g in grads)):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_down_pool_window_is_causal_and_aligned():
  """Coarse step k sees fine frames kp-p+1 .. kp and nothing later (the last p-1 frames are in no window)."""
  p, width = 4, 8
  pool = DownPool(width, p, width, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (1, 5 * p, width))
  base, _ = pool(x)
  for t in range(x.shape[1]):
    changed = np.asarray(jnp.abs(pool(x.at[:, t].add(1.0))[0] - base).max(axis=(0, 2)) > 0)
    window = -(-t // p)  # the only window that contains frame t: ceil(t / p)
    assert changed.nonzero()[0].tolist() == ([window] if window < base.shape[1] else [])


def test_grouped_taps_are_block_diagonal():
  p, width, groups = 3, 8, 4
  conv = nnx.Conv(width, width, kernel_size=(p,), feature_group_count=groups, rngs=nnx.Rngs(0))
  kernel, taps, c = conv.kernel[...], grouped_taps(conv), width // groups  # kernel [p, c, width]
  assert taps.shape == (p, width, width)
  for g in range(groups):
    for h in range(groups):
      block = taps[:, g * c:(g + 1) * c, h * c:(h + 1) * c]
      np.testing.assert_array_equal(block, kernel[:, :, h * c:(h + 1) * c] if g == h else 0)
  depthwise = nnx.Conv(width, width, kernel_size=(p,), feature_group_count=width, rngs=nnx.Rngs(1))
  np.testing.assert_array_equal(grouped_taps(depthwise), depthwise.kernel[...][:, 0, :])  # the diagonals, [p, d]


@pytest.mark.parametrize("groups", [1, 16])
def test_down_pool_step_form_equals_parallel_form(groups):
  # Fine step t = kp closes window k (frames kp-p+1 .. kp) and outputs c_k; steps kp+j (j = 1..p-1) add frame
  # kp+j to the open window's partial sum, the state. Lengths: after a window closes (5), mid-window (10), all (12).
  p, width = 4, 16
  pool = DownPool(width, p, groups, rngs=nnx.Rngs(0))
  pool.conv.bias[...] = jax.random.normal(jax.random.key(2), (width,))
  x = jax.random.normal(jax.random.key(3), (2, 3 * p, width))
  params = pool.decode_params()
  for length in (5, 10, 12):
    c, state = pool(x, length=length)
    acc, coarse = DownPool.init_state(params, 2), []
    for t in range(length):
      if t % p == 0:
        acc, c_k = DownPool.close(params, acc, x[:, t])
        coarse.append(c_k)
      else:
        acc = DownPool.accumulate(params, acc, x[:, t], jnp.int32(t % p))
    assert len(coarse) == -(-length // p)
    np.testing.assert_allclose(jnp.stack(coarse, axis=1), c[:, :len(coarse)], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acc, state, rtol=1e-5, atol=1e-5)
  _, state = pool(x, length=9)  # frame 8 closed window 2: nothing open
  np.testing.assert_array_equal(state, 0)


@pytest.mark.parametrize("groups", [1, 16])
def test_up_pool_step_form_equals_parallel_form(groups):
  # Coarse step k gives the p fine outputs kp .. kp+p-1 at once: they are the state, handed out one per fine step.
  p, width = 4, 16
  pool = UpPool(width, p, groups, num_blocks=1, rngs=nnx.Rngs(0))
  pool.conv.bias[...] = jax.random.normal(jax.random.key(2), (width,))
  c = jax.random.normal(jax.random.key(3), (2, 3, width))
  y, state = pool(c, length=2)
  params = pool.decode_params()
  window = UpPool.init_state(params, 2)
  assert window.shape == (2, p, width)
  for k in range(2):
    window = UpPool.step(params, c[:, k])
    np.testing.assert_allclose(window, y[:, k * p:(k + 1) * p], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(window, state, rtol=1e-5, atol=1e-5)
