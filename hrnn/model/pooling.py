"""Causal temporal pooling between U-Net levels (docs/model.md, "Pooling").

Down-pool by p: a grouped Conv1D with kernel p and stride p over the input left-padded by p-1 frames, so coarse
step k sees fine frames kp-p+1 .. kp:   c_k = sum_{i<p} W_i x_{kp-p+1+i} + bias.
Up-pool by p: a grouped transposed convolution (input dilation p, padding (p-1, p-1), kernel p), so the fine
outputs kp+j, j = 0..p-1, depend on coarse step k alone:   y_{kp+j} = V_{p-1-j} c_k + bias.
Together with the input shift of the model, the whole U-Net is causal without any extra shift.

The parameters are those of `nnx.Conv` layers (kernel [p, d/G, d], bias [d]), but since the windows do not
overlap, both directions are computed tap by tap (`grouped_taps`, `apply_tap`), the formulas of the step form:
XLA's CPU grouped convolutions, and above all their gradients, are slow (the depthwise up-pool's gradient at
[4, 16000, 128] takes 3.9 s as a convolution, 0.05 s as products).

Each pool holds its parallel form (`__call__`, which also returns the state after the last real step) and its
step form (`decode_params`, `init_state` and the step functions). Shapes follow `hrnn.model.array_typing`.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from hrnn.model.array_typing import Activations, Frame
from hrnn.model.initializers import scaled_init


@flax.struct.dataclass
class PoolDecode:
  """The step form's arrays of a pool: one matrix per tap (`grouped_taps`) and the bias."""

  w: jax.Array  # [p, d] (depthwise: the diagonals) or [p, d, d]; the tap order is the pool's own (see its class)
  b: jax.Array  # [d]


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
  """[B, T, d] -> [B, T/p, d]; T must be a multiple of p.

  State (step form): the partial sum [B, d] of the open window. After fine step kp+n (0 <= n < p) the next coarse
  step's window k+1 has taken frames kp+1 .. kp+n: state = sum_{i<n} W_i x_{kp+1+i} (zeros when n = 0).
  """

  def __init__(self, width: int, p: int, groups: int, *, rngs: nnx.Rngs):
    self.p = p
    self.conv = nnx.Conv(width, width, kernel_size=(p,), strides=(p,), padding="VALID",
                         feature_group_count=groups, rngs=rngs)

  def __call__(self, x: Activations, *, length: int | None = None,
               seq_axis: str | None = None) -> tuple[Activations, Frame]:
    """x [B, T, d] -> (c [B, T/p, d], the state after the first `length` fine steps (None: all T)); with
    `seq_axis` (time sharded), the first window's earlier frames come from the previous shard."""
    batch, steps, width = x.shape
    params = self.decode_params()
    frames = jnp.concatenate([left_context(x, self.p - 1, seq_axis), x], axis=1)[:, :steps]
    windows = frames.reshape(batch, steps // self.p, self.p, width)  # window k: frames kp-p+1 .. kp
    k, n = divmod((steps if length is None else length) - 1, self.p)
    return window_sum(windows, params.w) + params.b, window_sum(x[:, k * self.p + 1:k * self.p + 1 + n], params.w)

  def decode_params(self) -> PoolDecode:
    """Per-tap weights w (tap i multiplies a window's frame kp-p+1+i) and the bias."""
    return PoolDecode(w=grouped_taps(self.conv), b=self.conv.bias[...])

  @staticmethod
  def init_state(params: PoolDecode, batch: int) -> Frame:
    """Zeros [batch, d]: the p-1 frames before time 0 are zeros."""
    return jnp.zeros((batch, params.b.shape[0]), jnp.float32)

  @staticmethod
  def accumulate(params: PoolDecode, acc: Frame, x: Frame, offset: jax.Array) -> Frame:
    """The step at fine step kp+j, j = `offset` in 1..p-1 (may be traced): frame x joins the open window,
    acc + W_{j-1} x."""
    return acc + apply_tap(x, params.w[offset - 1])

  @staticmethod
  def close(params: PoolDecode, acc: Frame, x: Frame) -> tuple[Frame, Frame]:
    """The step at fine step kp, where window k closes: (the next window's empty partial sum, the coarse input
    c_k = acc + W_{p-1} x + bias)."""
    return jnp.zeros_like(acc), acc + apply_tap(x, params.w[-1]) + params.b


class UpPool(nnx.Module):
  """[B, T/p, d] -> [B, T, d]; kernel initialised at scale 1 / num_blocks of the level.

  State (step form): the p fine outputs [B, p, d] of the last coarse step, handed out one per fine step.
  """

  def __init__(self, width: int, p: int, groups: int, num_blocks: int, *, rngs: nnx.Rngs):
    self.p = p
    self.conv = nnx.Conv(width, width, kernel_size=(p,), input_dilation=(p,), padding=[(p - 1, p - 1)],
                         feature_group_count=groups, kernel_init=scaled_init(num_blocks), rngs=rngs)

  def __call__(self, c: Activations, *, length: int | None = None) -> tuple[Activations, jax.Array]:
    """c [B, T/p, d] -> (y [B, T, d], the state after the first `length` coarse steps (None: all T/p)). With no
    time mixing, the parallel form is the step form applied to every coarse step at once."""
    batch, coarse, width = c.shape
    y = UpPool.step(self.decode_params(), c)  # [B, T/p, p, d]
    state = y[:, (coarse if length is None else length) - 1]
    return y.reshape(batch, coarse * self.p, width), state

  def decode_params(self) -> PoolDecode:
    """Per-offset weights w (w[j] = V_{p-1-j} makes fine output kp+j) and the bias."""
    return PoolDecode(w=grouped_taps(self.conv)[::-1], b=self.conv.bias[...])

  @staticmethod
  def init_state(params: PoolDecode, batch: int) -> jax.Array:
    """Zeros [batch, p, d] (replaced at step 0, before they are read)."""
    return jnp.zeros((batch, params.w.shape[0], params.b.shape[0]), jnp.float32)

  @staticmethod
  def step(params: PoolDecode, c: jax.Array) -> jax.Array:
    """The p fine outputs of coarse steps c [..., d]: y_{kp+j} = V_{p-1-j} c + bias, as [..., p, d] (the state)."""
    return jnp.stack([apply_tap(c, w) for w in params.w], axis=-2) + params.b


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


def window_sum(frames: jax.Array, taps: jax.Array) -> jax.Array:
  """sum_i W_i frames[..., i, :] in tap order over the first n <= p frames of windows [..., n, d] (zeros when
  n = 0): a whole window's convolution, or the partial sum of an open one."""
  total = jnp.zeros(frames.shape[:-2] + frames.shape[-1:], frames.dtype)
  for i in range(frames.shape[-2]):
    total = total + apply_tap(frames[..., i, :], taps[i])
  return total
