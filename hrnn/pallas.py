"""A Pallas kernel for the diagonal linear recurrence: the `pallas` backend of `hrnn.scan.linear_recurrence`.

Pallas has no complex dtype, so a complex64 recurrence runs on float32 planes (Re, Im):

  h_t = a_t h_{t-1} + b_t   as   Re h_t = Re a_t Re h_{t-1} - Im a_t Im h_{t-1} + Re b_t,
                                 Im h_t = Re a_t Im h_{t-1} + Im a_t Re h_{t-1} + Im b_t.

Layout: the sequence is cut into blocks of `BLOCK_TIME` steps. One `pallas_call` per time block runs a grid over
(batch, channel blocks of `BLOCK_CHANNELS`) in parallel; each program walks its block's steps one row [1, bc] at
a time with the state in registers, and hands its final state to the next time block through a `lax.scan`. So a
program's working set is a [BLOCK_TIME, bc] tile whatever the sequence length (it fits TPU VMEM), and no
transpose of the [B, T, C] inputs is needed.

The kernel also runs backwards in time (`reverse=True`), which the backward pass needs; the custom VJP that uses
it is shared with the chunked backend in `hrnn.scan`. On CPU the kernel runs in Pallas's
interpret mode, which is how the test suite checks it; it has not been run on a GPU or TPU here.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from hrnn.scan import shift_left

BLOCK_TIME = 128  # steps per kernel launch
BLOCK_CHANNELS = 128  # channels per program (the TPU lane width)


def _mul(x: tuple, y: tuple) -> tuple:
  """Product of two numbers held as planes: (re,) for real, (re, im) for complex."""
  if len(x) == 1:
    return (x[0] * y[0],)
  return (x[0] * y[0] - x[1] * y[1], x[0] * y[1] + x[1] * y[0])


def _add(x: tuple, y: tuple) -> tuple:
  return tuple(u + v for u, v in zip(x, y))


def _kernel(*refs, planes: int, steps: int, reverse: bool):
  """One program: `steps` sequential steps s = a_t s + b_t over a [1, steps, bc] tile, backwards in time when
  `reverse`. Refs (each a tuple of `planes`): a, b [1, steps, bc]; s0 [1, bc]; then the outputs: the states
  [1, steps, bc] and the final state [1, bc]."""
  a, b, s0, h, final = (refs[k * planes:(k + 1) * planes] for k in range(5))

  def row(ref_planes, t):
    return tuple(r[0, pl.ds(t, 1), :] for r in ref_planes)  # [1, bc]

  def body(i, s):
    t = steps - 1 - i if reverse else i
    s = _add(_mul(row(a, t), s), row(b, t))
    for ref, value in zip(h, s):
      ref[0, pl.ds(t, 1), :] = value
    return s

  s = lax.fori_loop(0, steps, body, tuple(r[...] for r in s0))
  for ref, value in zip(final, s):
    ref[...] = value


def _time_block(a: tuple, b: tuple, s0: tuple, *, reverse: bool, interpret: bool) -> tuple[tuple, tuple]:
  """One pallas_call over a time block: planes of a, b [B, bt, C] and s0 [B, C] -> (h planes, final planes)."""
  batch, steps, channels = a[0].shape
  planes = len(a)
  bc = min(BLOCK_CHANNELS, channels)
  tile = pl.BlockSpec((1, steps, bc), lambda i, j: (i, 0, j))
  state = pl.BlockSpec((1, bc), lambda i, j: (i, j))
  # Inside shard_map the outputs vary over the same mesh axes as the inputs.
  like = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, manual_axis_type=jax.typeof(x).manual_axis_type)
  out = pl.pallas_call(
      functools.partial(_kernel, planes=planes, steps=steps, reverse=reverse),
      out_shape=[like(a[0])] * planes + [like(s0[0])] * planes,
      grid=(batch, channels // bc),
      in_specs=[tile] * (2 * planes) + [state] * planes,
      out_specs=[tile] * planes + [state] * planes,
      interpret=interpret,
  )(*a, *b, *s0)
  return tuple(out[:planes]), tuple(out[planes:])


def scan(a: jax.Array, b: jax.Array, s0: jax.Array, *, reverse: bool = False, keep_states: bool = True,
         interpret: bool | None = None) -> tuple[jax.Array | None, jax.Array]:
  """The kernel interface of `hrnn.scan` (`hrnn.scan.Kernel`): states [B, T, C] (None unless `keep_states`) and
  the final state [B, C] of s_t = a_t s_{t-1} + b_t over t = 0..T-1 (with `reverse`, the backward pass's
  s_t = a_{t+1} s_{t+1} + b_t over t = T-1..0, a_T = 1) from s0. `interpret` defaults to True on CPU (Pallas
  compiles only for GPU and TPU).
  """
  interpret = jax.default_backend() == "cpu" if interpret is None else interpret
  if reverse:  # the kernel steps with the coefficient of its own row: a_{t+1}
    a = shift_left(a)
  batch, length, channels = a.shape
  steps = min(BLOCK_TIME, length)
  blocks = -(-length // steps)
  bc = min(BLOCK_CHANNELS, channels)
  pad_t, pad_c = blocks * steps - length, -channels % bc
  # a = 1, b = 0 at padded times leaves the carry unchanged; padded channels are zeros and are cropped.
  a = jnp.pad(a, ((0, 0), (0, pad_t), (0, pad_c)), constant_values=((0, 0), (1, 1), (0, 0)))
  b = jnp.pad(b, ((0, 0), (0, pad_t), (0, pad_c)))
  s0 = jnp.pad(s0, ((0, 0), (0, pad_c)))
  split = (lambda x: (x.real, x.imag)) if jnp.iscomplexobj(a) else (lambda x: (x,))
  a_planes, b_planes = split(a), split(b)

  def block(carry, index):
    start = index * steps
    tile = lambda planes: tuple(lax.dynamic_slice_in_dim(x, start, steps, axis=1) for x in planes)
    out, carry = _time_block(tile(a_planes), tile(b_planes), carry, reverse=reverse, interpret=interpret)
    return carry, out

  final, out = lax.scan(block, split(s0), jnp.arange(blocks), reverse=reverse)
  join = (lambda p: lax.complex(*p)) if len(a_planes) == 2 else (lambda p: p[0])
  final = join(final)[:, :channels]
  if not keep_states:
    return None, final
  # out: planes of [blocks, B, steps, C'] -> [B, T, C]
  states = join(tuple(jnp.moveaxis(p, 0, 1).reshape(batch, blocks * steps, -1) for p in out))
  return states[:, :length, :channels], final
