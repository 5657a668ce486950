"""Causal temporal pooling between U-Net levels (reference.md section 1).

Down-pool by p: a grouped Conv1D with kernel p and stride p over the input left-padded by p-1 frames, so coarse
step k sees fine frames kp-p+1 .. kp:   c_k = sum_{i<p} W_i x_{kp-p+1+i} + bias.
Up-pool by p: a grouped transposed convolution (input dilation p, padding (p-1, p-1), kernel p), so the fine
outputs kp+j, j = 0..p-1, depend on coarse step k alone:   y_{kp+j} = V_{p-1-j} c_k + bias.
Together with the input shift of the model, the whole U-Net is causal without any extra shift.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hrnn.blocks import scaled_init


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
    x = jnp.concatenate([left_context(x, self.p - 1, seq_axis), x], axis=1)
    return self.conv(x)


class UpPool(nnx.Module):
  """[B, T/p, d] -> [B, T, d]; kernel initialised at scale 1 / num_blocks of the level."""

  def __init__(self, width: int, p: int, groups: int, num_blocks: int, *, rngs: nnx.Rngs):
    self.p = p
    self.conv = nnx.Conv(width, width, kernel_size=(p,), input_dilation=(p,), padding=[(p - 1, p - 1)],
                         feature_group_count=groups, kernel_init=scaled_init(num_blocks), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.conv(x)
