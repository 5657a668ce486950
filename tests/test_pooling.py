"""hrnn.pooling: the tap-by-tap pooling equals the grouped convolutions of reference.md section 1."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hrnn.pooling import DownPool, UpPool, grouped_taps, left_context


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
  cases = [(down, x, lambda m, x: m(x), _conv_down), (up, c, lambda m, c: m(c), lambda m, c: m.conv(c))]
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
  base = pool(x)
  for t in range(x.shape[1]):
    changed = np.asarray(jnp.abs(pool(x.at[:, t].add(1.0)) - base).max(axis=(0, 2)) > 0)
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
