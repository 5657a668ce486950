"""Pallas kernels for the diagonal linear recurrence: the `pallas` backend of `hrnn.ops.scan.linear_recurrence`.

Pallas has no complex dtype, so a complex64 recurrence runs on float32 planes (Re, Im):

  h_t = a_t h_{t-1} + b_t   as   Re h_t = Re a_t Re h_{t-1} - Im a_t Im h_{t-1} + Re b_t,
                                 Im h_t = Re a_t Im h_{t-1} + Im a_t Re h_{t-1} + Im b_t.

One design per target, where their rules differ (`hrnn.ops.scan` picks one per platform lowered for):

- TPU (Mosaic): one `pallas_call` over the grid (batch, channel blocks of 128 lanes, time blocks of `TPU_BLOCK_TIME`
  steps). The time axis is the last, "arbitrary" (sequential) grid axis: the state lives in a VMEM scratch that
  survives from one time block to the next, so the whole sequence is one kernel launch and Pallas double-buffers
  the [time block, 128] tiles of a and b from HBM while the previous one is worked on. Every load and store is an
  aligned (8, 128) tile (the TPU's vreg shape): each group of 8 steps is read as one tile, its 8 steps are
  unrolled on rows in registers, and the 8 states are written back as one tile. Batch and channel blocks are
  "parallel" axes (split across the cores of a megacore chip).
- GPU (Triton): the same walk over time per program, one channel per thread (`GPU_BLOCK_CHANNELS` channels, one
  warp, per program), reading a and b straight from global memory with nothing staged in shared memory (a
  recurrence reuses no data). One program per (batch, channel block) is too few to fill a GPU (32 x 128 channels
  make 128 one-warp programs), so time is also cut into chunks (`chunks`): a first launch gives each chunk's
  final state from zero, a small scan over the chunks' (decay, state) summaries gives each chunk's initial state,
  and a second launch writes the states: B * C / 32 * chunks programs. Triton rather than Mosaic GPU (jax's
  default Pallas GPU lowering) because Mosaic GPU runs only on Hopper and newer, and Colab and Kaggle lend older
  GPUs too.
- CPU: Pallas does not compile for CPU; the TPU kernel runs in Pallas's interpret mode (how the tests check it).

Each kernel also runs backwards in time (`reverse=True`) for the custom VJP in `hrnn.ops.scan`, which applies these
kernels to both passes. This module imports only `hrnn.ops.platforms` (below it); `hrnn.ops.scan` is its only user.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

from hrnn.ops.platforms import unsupported

LANES = 128  # TPU vector lanes: the channel block of the TPU kernel
SUBLANES = 8  # TPU vector sublanes: steps handled per aligned tile
TPU_BLOCK_TIME = 512  # steps per time block: 6 [512, 128] float32 tiles double-buffered take 3 MiB of VMEM
GPU_BLOCK_CHANNELS = 32  # channels per GPU program: one warp, one channel per thread
GPU_PROGRAMS = 4096  # programs the GPU kernel aims at (H100: 132 SMs x 31 one-warp programs)


# --------------------------------------------------------------------------- complex numbers as float32 planes


def _mul(x: tuple, y: tuple) -> tuple:
  """Product of two numbers held as planes: (re,) for real, (re, im) for complex."""
  if len(x) == 1:
    return (x[0] * y[0],)
  return (x[0] * y[0] - x[1] * y[1], x[0] * y[1] + x[1] * y[0])


def _step(a: tuple, b: tuple, s: tuple) -> tuple:
  """One recurrence step on planes: a s + b."""
  return tuple(p + q for p, q in zip(_mul(a, s), b))


def _split(x: jax.Array) -> tuple[jax.Array, ...]:
  return (jnp.real(x), jnp.imag(x)) if jnp.iscomplexobj(x) else (x,)


def _join(planes) -> jax.Array:
  return lax.complex(*planes) if len(planes) == 2 else planes[0]


def shift_left(a: jax.Array) -> jax.Array:
  """[B, T, C] -> a_{t+1} at t, with 1 past the end: the coefficients of the reverse recurrence."""
  return jnp.concatenate([a[:, 1:], jnp.ones_like(a[:, :1])], axis=1)


def _pad(x: jax.Array, time: int, channels: int, value: float) -> jax.Array:
  """Pads [B, T, C] at the end of time and channels. a = 1, b = 0 at padded times leaves the state unchanged in
  either direction; padded channels are cropped."""
  return jnp.pad(x, ((0, 0), (0, time - x.shape[1]), (0, channels - x.shape[2])), constant_values=value)


def _on(platforms: tuple[str, ...], kernel, what: str, a, b, s0, *, keep_states: bool):
  """`kernel(a, b, s0)` when lowered for one of `platforms`; lowered for any other, a `PlatformError`."""
  refuse = unsupported(f"the Pallas {what} kernel (scan backend 'pallas', compiled)",
                       "run it with interpret=True on CPU, or use scan backend 'pallas' (the platform's kernel), "
                       "'chunked', 'associative' or 'linear'")

  def refused(a, b, s0):
    a, b, s0 = refuse(a, b, s0)
    return (b if keep_states else None), s0

  return lax.platform_dependent(a, b, s0, default=refused, **dict.fromkeys(platforms, kernel))


def _like(x: jax.Array, shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
  # Inside shard_map the outputs vary over the same mesh axes as the inputs.
  return jax.ShapeDtypeStruct(shape, x.dtype, manual_axis_type=jax.typeof(x).manual_axis_type)


# --------------------------------------------------------------------------- TPU (Mosaic)


def _tpu_kernel(*refs, planes: int, reverse: bool, keep_states: bool):
  """One grid step: the time block [block, 128] of one (batch, channel block), entered with the VMEM state.

  Refs, each a tuple of `planes`: a, b [block, 128]; s0 [1, 128]; the outputs (states [block, 128] when
  `keep_states`, final [1, 128]); the scratch state [1, 128].
  """
  refs = iter(refs)
  take = lambda: tuple(next(refs) for _ in range(planes))
  a, b, s0 = take(), take(), take()
  h = take() if keep_states else ()
  final, state = take(), take()

  @pl.when(pl.program_id(2) == 0)
  def _():  # first time block (last, when reverse): the state starts from s0
    for ref, value in zip(state, s0):
      ref[...] = value[...]

  groups = a[0].shape[0] // SUBLANES

  def group(k, s):
    start = pl.multiple_of(((groups - 1 - k) if reverse else k) * SUBLANES, SUBLANES)
    tile = lambda ref_planes: tuple(r[pl.ds(start, SUBLANES), :] for r in ref_planes)  # [8, 128] each
    a8, b8 = tile(a), tile(b)
    rows = [None] * SUBLANES
    for i in (range(SUBLANES - 1, -1, -1) if reverse else range(SUBLANES)):  # unrolled on the tile's rows
      s = _step(tuple(x[i:i + 1] for x in a8), tuple(x[i:i + 1] for x in b8), s)
      rows[i] = s
    for p, ref in enumerate(h):
      ref[pl.ds(start, SUBLANES), :] = jnp.concatenate([row[p] for row in rows], axis=0)
    return s

  s = lax.fori_loop(0, groups, group, tuple(ref[...] for ref in state))
  for ref, out, value in zip(state, final, s):
    ref[...] = value
    out[...] = value  # the block stays resident over the time axis: the last time block's value is written back


def _tpu_call(a: tuple, b: tuple, s0: tuple, *, reverse: bool, keep_states: bool,
              interpret: bool) -> tuple[tuple, tuple]:
  """Planes of a, b [B, T, C] (T a multiple of the time block, C of 128) and s0 [B, 1, C] -> planes of the
  states (empty unless `keep_states`) and of the final state [B, 1, C]."""
  batch, length, channels = a[0].shape
  planes = len(a)
  block = min(TPU_BLOCK_TIME, length)
  times = length // block
  time_index = (lambda t: times - 1 - t) if reverse else (lambda t: t)
  tile = pl.BlockSpec((None, block, LANES), lambda i, j, t: (i, time_index(t), j))
  state = pl.BlockSpec((None, 1, LANES), lambda i, j, t: (i, 0, j))
  out_shape = [_like(a[0], a[0].shape)] * (planes if keep_states else 0) + [_like(s0[0], s0[0].shape)] * planes
  out = pl.pallas_call(
      functools.partial(_tpu_kernel, planes=planes, reverse=reverse, keep_states=keep_states),
      out_shape=out_shape,
      grid=(batch, channels // LANES, times),
      in_specs=[tile] * (2 * planes) + [state] * planes,
      out_specs=[tile] * (planes if keep_states else 0) + [state] * planes,
      scratch_shapes=[pltpu.VMEM((1, LANES), jnp.float32)] * planes,
      compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary")),
      interpret=interpret,
      name="hrnn_linear_scan_tpu",
  )(*a, *b, *s0)
  return tuple(out[:-planes]), tuple(out[-planes:])


def tpu_scan(a: jax.Array, b: jax.Array, s0: jax.Array, *, reverse: bool = False, keep_states: bool = True,
             interpret: bool = False) -> tuple[jax.Array | None, jax.Array]:
  """The TPU kernel with the `hrnn.ops.scan.Kernel` interface (see `scan`); `interpret` runs it on CPU. Lowered for
  another platform than TPU without `interpret`, it stops with `hrnn.ops.platforms.PlatformError`."""
  if interpret:
    return _tpu(a, b, s0, reverse=reverse, keep_states=keep_states, interpret=True)
  kernel = functools.partial(_tpu, reverse=reverse, keep_states=keep_states, interpret=False)
  return _on(("tpu",), kernel, "TPU", a, b, s0, keep_states=keep_states)


def _tpu(a: jax.Array, b: jax.Array, s0: jax.Array, *, reverse: bool, keep_states: bool,
         interpret: bool) -> tuple[jax.Array | None, jax.Array]:
  if reverse:  # the kernel steps with the coefficient of its own row: a_{t+1}
    a = shift_left(a)
  batch, length, channels = a.shape
  step = min(TPU_BLOCK_TIME, -(-length // SUBLANES) * SUBLANES)
  time, width = -(-length // step) * step, -(-channels // LANES) * LANES
  (states, final) = _tpu_call(_split(_pad(a, time, width, 1)), _split(_pad(b, time, width, 0)),
                              _split(_pad(s0[:, None], 1, width, 0)), reverse=reverse, keep_states=keep_states,
                              interpret=interpret)
  final = _join(final)[:, 0, :channels]
  return (_join(states)[:, :length, :channels] if keep_states else None), final


# --------------------------------------------------------------------------- GPU (Triton)


def _gpu_kernel(*refs, planes: int, reverse: bool, keep_states: bool):
  """One program: one chunk of one batch row, `GPU_BLOCK_CHANNELS` channels, walked step by step.

  Refs, each a tuple of `planes`: a, b [chunk, bc]; s0 [bc]; the outputs (states [chunk, bc] when `keep_states`,
  final [bc]).
  """
  refs = iter(refs)
  take = lambda: tuple(next(refs) for _ in range(planes))
  a, b, s0 = take(), take(), take()
  h = take() if keep_states else ()
  final = take()
  steps = a[0].shape[0]

  def body(i, s):
    t = steps - 1 - i if reverse else i
    s = _step(tuple(r[t, :] for r in a), tuple(r[t, :] for r in b), s)
    for ref, value in zip(h, s):
      ref[t, :] = value
    return s

  s = lax.fori_loop(0, steps, body, tuple(r[...] for r in s0))
  for ref, value in zip(final, s):
    ref[...] = value


def _gpu_call(a: tuple, b: tuple, s0: tuple, *, reverse: bool, keep_states: bool,
              interpret: bool) -> tuple[tuple, tuple]:
  """Planes of a, b [N, L, C] (C a multiple of the channel block) and s0 [N, C] -> planes of the states (empty
  unless `keep_states`) and of the final state [N, C]: N independent sequences, one program per channel block."""
  rows, steps, channels = a[0].shape
  planes = len(a)
  tile = pl.BlockSpec((None, steps, GPU_BLOCK_CHANNELS), lambda i, j: (i, 0, j))
  state = pl.BlockSpec((None, GPU_BLOCK_CHANNELS), lambda i, j: (i, j))
  out_shape = [_like(a[0], a[0].shape)] * (planes if keep_states else 0) + [_like(s0[0], s0[0].shape)] * planes
  out = pl.pallas_call(
      functools.partial(_gpu_kernel, planes=planes, reverse=reverse, keep_states=keep_states),
      out_shape=out_shape,
      grid=(rows, channels // GPU_BLOCK_CHANNELS),
      in_specs=[tile] * (2 * planes) + [state] * planes,
      out_specs=[tile] * (planes if keep_states else 0) + [state] * planes,
      compiler_params=pltriton.CompilerParams(num_warps=1, num_stages=2),
      interpret=interpret,
      name="hrnn_linear_scan_gpu",
  )(*a, *b, *s0)
  return tuple(out[:-planes]), tuple(out[-planes:])


def chunks(batch: int, length: int, channels: int) -> int:
  """Chunks of time for the GPU kernel: enough for about `GPU_PROGRAMS` programs, at most sqrt(length)."""
  programs = batch * -(-channels // GPU_BLOCK_CHANNELS)
  return max(1, min(GPU_PROGRAMS // programs, math.isqrt(length)))


def gpu_scan(a: jax.Array, b: jax.Array, s0: jax.Array, *, reverse: bool = False, keep_states: bool = True,
             interpret: bool = False) -> tuple[jax.Array | None, jax.Array]:
  """The GPU kernel with the `hrnn.ops.scan.Kernel` interface (see `scan`); `interpret` runs it on CPU. Lowered for
  another platform than CUDA or ROCm without `interpret`, it stops with `hrnn.ops.platforms.PlatformError`.

  Time is cut into nc chunks of L steps: pass 1 gives each chunk's final state from zero, S_c, and its decay
  A_c = prod a; the chunks' initial states follow from s_c = A_c s_{c-1} + S_c (a scan over nc summaries, in
  reverse order when `reverse`); pass 2 walks each chunk from its initial state, writing the states.
  """
  if interpret:
    return _gpu(a, b, s0, reverse=reverse, keep_states=keep_states, interpret=True)
  kernel = functools.partial(_gpu, reverse=reverse, keep_states=keep_states, interpret=False)
  return _on(("cuda", "rocm"), kernel, "GPU", a, b, s0, keep_states=keep_states)


def _gpu(a: jax.Array, b: jax.Array, s0: jax.Array, *, reverse: bool, keep_states: bool,
         interpret: bool) -> tuple[jax.Array | None, jax.Array]:
  if reverse:
    a = shift_left(a)
  batch, length, channels = a.shape
  nc = chunks(batch, length, channels)
  chunk = -(-length // nc)
  width = -(-channels // GPU_BLOCK_CHANNELS) * GPU_BLOCK_CHANNELS
  a, b = _pad(a, nc * chunk, width, 1), _pad(b, nc * chunk, width, 0)
  s0 = jnp.pad(s0, ((0, 0), (0, width - channels)))
  rows = lambda x: x.reshape(batch * nc, chunk, width)  # [B, nc * L, C] -> [B * nc, L, C]: chunk c of row i
  a_rows, b_rows = _split(rows(a)), _split(rows(b))
  call = functools.partial(_gpu_call, reverse=reverse, interpret=interpret)
  if nc == 1:
    states, final = call(a_rows, b_rows, _split(s0), keep_states=keep_states)
    final = _join(final)
  else:
    _, local = call(a_rows, b_rows, _split(jnp.zeros((batch * nc, width), s0.dtype)), keep_states=False)
    decay = jnp.prod(a.reshape(batch, nc, chunk, width), axis=2)
    local = _join(local).reshape(batch, nc, width)

    def across(s, summary):  # chunk c maps its initial state s to A_c s + S_c
      decay_c, state_c = summary
      return decay_c * s + state_c, s

    final, starts = lax.scan(across, s0, (jnp.moveaxis(decay, 1, 0), jnp.moveaxis(local, 1, 0)), reverse=reverse)
    if not keep_states:
      return None, final[:, :channels]
    states, _ = call(a_rows, b_rows, _split(jnp.moveaxis(starts, 0, 1).reshape(batch * nc, width)),
                     keep_states=True)
  final = final[:, :channels]
  if not keep_states:
    return None, final
  return _join(states).reshape(batch, nc * chunk, width)[:, :length, :channels], final
