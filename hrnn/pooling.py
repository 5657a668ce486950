"""Causal temporal pooling between U-Net levels (reference.md section 1).

Down-pool by p: a grouped Conv1D with kernel p and stride p over the input left-padded by p-1 frames, so coarse
step k sees fine frames kp-p+1 .. kp:   c_k = sum_{i<p} W_i x_{kp-p+1+i} + bias.
Up-pool by p: a grouped transposed convolution (input dilation p, padding (p-1, p-1), kernel p), so the fine
outputs kp+j, j = 0..p-1, depend on coarse step k alone:   y_{kp+j} = V_{p-1-j} c_k + bias.
Together with the input shift of the model, the whole U-Net is causal without any extra shift.

The parameters are those of `nnx.Conv` layers (kernel [p, d/G, d], bias [d]), but since the windows do not
overlap, both directions are computed tap by tap with `apply_tap`, the formulas of step-wise generation:
XLA's CPU grouped convolutions, and above all their gradients, are slow (the depthwise up-pool's gradient at
[4, 16000, 128] takes 3.9 s as a convolution, 0.05 s as products).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hrnn.initializers import scaled_init


def left_context(x: jax.Array, n: int, seq_axis: str | None) -> jax.Array:
  """The n frames before x along time: zeros at the sequence start, the previous shard's tail when sharded.

  x: [B, T, d] -> [B, n, d]. Under `shard_map` with the time axis sharded over `seq_axis`, shard i receives the
  last n frames of shard i-1 (a halo exchange); shard 0 receives zeros.
  """
  if seq_axis is None:
    return jnp.zeros((x.shape[0], n, x.shape[2]), x.dtype)
  shards = jax.lax.axis_size(seq_axis)
  return jax.lax.ppermute(x[:, -n:], seq_axis, perm=[(i, i + 1) for i in range(shards - 1)])


class DownPool(nnx.Module):
  """[B, T, d] -> [B, T/p, d]; T must be a multiple of p."""

  def __init__(self, width: int, p: int, groups: int, *, rngs: nnx.Rngs):
    self.p = p
    self.conv = nnx.Conv(width, width, kernel_size=(p,), strides=(p,), padding="VALID",
                         feature_group_count=groups, rngs=rngs)

  def __call__(self, x: jax.Array, *, seq_axis: str | None = None) -> jax.Array:
    batch, length, width = x.shape
    frames = jnp.concatenate([left_context(x, self.p - 1, seq_axis), x], axis=1)[:, :length]
    windows = frames.reshape(batch, length // self.p, self.p, width)  # window k: frames kp-p+1 .. kp
    params = self.step_params()
    return sum(apply_tap(windows[:, :, i], w) for i, w in enumerate(params["w"])) + params["b"]

  def step_params(self) -> dict[str, jax.Array]:
    """Per-tap weights "w" (`grouped_taps`: [p, d] or [p, d, d]; tap i multiplies frame kp-p+1+i), bias "b" [d]."""
    return {"w": grouped_taps(self.conv), "b": self.conv.bias[...]}

  def prefill(self, x: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """Pools x [B, T, d] (T a multiple of p) and returns the step state after the first `length` fine steps: the
    partial sum of the next coarse window, sum_{j=1..n} W_{j-1} x_{kp+j} with k = (length-1) // p."""
    k, n = divmod(length - 1, self.p)
    taps = grouped_taps(self.conv)
    acc = jnp.zeros((x.shape[0], x.shape[2]), x.dtype)
    for j in range(n):
      acc = acc + apply_tap(x[:, k * self.p + 1 + j], taps[j])
    return self(x), acc


class UpPool(nnx.Module):
  """[B, T/p, d] -> [B, T, d]; kernel initialised at scale 1 / num_blocks of the level."""

  def __init__(self, width: int, p: int, groups: int, num_blocks: int, *, rngs: nnx.Rngs):
    self.p = p
    self.conv = nnx.Conv(width, width, kernel_size=(p,), input_dilation=(p,), padding=[(p - 1, p - 1)],
                         feature_group_count=groups, kernel_init=scaled_init(num_blocks), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    batch, coarse, width = x.shape
    return up_pool_step(self.step_params(), x).reshape(batch, coarse * self.p, width)  # [B, T/p, p, d] -> [B, T, d]

  def step_params(self) -> dict[str, jax.Array]:
    """Per-offset weights "w" (`grouped_taps`; w[j] = V_{p-1-j} makes fine output kp+j) and the bias "b" [d]."""
    return {"w": grouped_taps(self.conv)[::-1], "b": self.conv.bias[...]}

  def prefill(self, x: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """Up-pools x [B, T/p, d] and returns the step state after the first `length` coarse steps: the p fine outputs
    [B, p, d] of the last coarse step, handed out one per fine step."""
    y = self(x)
    return y, y[:, (length - 1) * self.p:length * self.p]


def grouped_taps(conv: nnx.Conv) -> jax.Array:
  """A grouped conv kernel [p, d_in/G, d_out] as one matrix per tap, each acting on a whole frame: [p, d] when
  depthwise (the diagonals, kept as vectors), else the block-diagonal matrices [p, d_in, d_out].

  Dense block-diagonal matrices rather than a batched product over the groups (G times the FLOPs): XLA's CPU
  batched dots round differently depending on a row's position in the batch, so a token's logits would depend, in
  the last bits, on the other rows.
  """
  kernel = conv.kernel[...]
  p, c_in, d_out = kernel.shape
  groups = conv.feature_group_count
  c_out = d_out // groups
  if c_in == c_out == 1:
    return kernel.reshape(p, d_out)
  blocks = kernel.reshape(p, c_in, groups, c_out)  # [p, i, g, o]: input g * c_in + i -> output g * c_out + o
  return jnp.einsum("pigo,gh->pgiho", blocks, jnp.eye(groups, dtype=kernel.dtype)).reshape(p, groups * c_in, d_out)


def apply_tap(x: jax.Array, w: jax.Array) -> jax.Array:
  """Frames x [..., d_in] times one tap's matrix from `grouped_taps`: w [d] (a diagonal) or [d_in, d_out]."""
  return x * w if w.ndim == 1 else x @ w


def init_down_state(params: dict[str, jax.Array], batch: int) -> jax.Array:
  """Zero partial sum [batch, d] of the first coarse window (the p-1 frames before time 0 are zeros)."""
  return jnp.zeros((batch, params["b"].shape[0]), jnp.float32)


def down_pool_accumulate(params: dict[str, jax.Array], acc: jax.Array, x: jax.Array, j: jax.Array) -> jax.Array:
  """Adds fine frame kp+j (j = 1..p-1, may be traced) to the next window's partial sum: acc + W_{j-1} x."""
  return acc + apply_tap(x, params["w"][j - 1])


def down_pool_close(params: dict[str, jax.Array], acc: jax.Array, x: jax.Array) -> jax.Array:
  """The coarse input at fine step kp from the partial sum and frame kp: c_k = acc + W_{p-1} x + bias."""
  return acc + apply_tap(x, params["w"][-1]) + params["b"]


def init_up_state(params: dict[str, jax.Array], batch: int) -> jax.Array:
  """Zero buffer [batch, p, d] of fine outputs (replaced at step 0, before it is read)."""
  p = params["w"].shape[0]
  return jnp.zeros((batch, p, params["b"].shape[0]), jnp.float32)


def up_pool_step(params: dict[str, jax.Array], c: jax.Array) -> jax.Array:
  """The p fine outputs of coarse steps c [..., d]: y_{kp+j} = V_{p-1-j} c + bias, as [..., p, d]."""
  return jnp.stack([apply_tap(c, w) for w in params["w"]], axis=-2) + params["b"]
