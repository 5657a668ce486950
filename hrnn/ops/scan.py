"""The diagonal linear recurrence h_t = a_t * h_{t-1} + b_t, the one sequential operation of HarmonicRNN.

Everything in the model that mixes information over time goes through `linear_recurrence`. Its backends compute
the same function:

- `linear`: `lax.scan` over time, differentiated by JAX: the reference.
- `associative`: `lax.associative_scan` with (a1, b1) o (a2, b2) = (a2 a1, a2 b1 + b2) (Blelloch), differentiated
  by JAX. The default on GPU.
- `chunked`: sequential inside chunks, all chunks at once, and a scan across the chunks' summaries (see
  `chunked_scan`); with the custom VJP below. The default on CPU, where it runs as one chunk, one sequential
  pass: in the native C++ kernels of `hrnn.ops.native` (through the XLA FFI, near memory bandwidth) when they could
  be built, else as an XLA loop.
- `pallas`: `hrnn.ops.pallas`, the Pallas kernels (Mosaic on TPU, Triton on GPU, the TPU kernel in interpret mode on
  CPU) with the same custom VJP. The default on TPU.

`backend=None` picks the default of the platform the program is lowered for (`DEFAULT_BACKENDS`, through
`jax.lax.platform_dependent`), and so do the kernels inside a backend (native or XLA loop for `chunked`, which
Pallas kernel for `pallas`): a program traced on a CPU host and exported or lowered ahead of time for a TPU or
GPU runs that platform's code. A kernel lowered for a platform it cannot run on stops with
`hrnn.ops.platforms.PlatformError`.

Custom VJP of the kernel backends. JAX's cotangent of a complex z is dL/dRe z - i dL/dIm z, the conjugate of
the usual gradient, so the backward pass (the reverse recurrence with conj(a) on ordinary gradients) reads, on JAX
cotangents g_t = dL/dh_t (total) and dh_t (direct):

  g_t = dh_t + a_{t+1} g_{t+1},   g_{T-1} = dh_{T-1} + dh_last,   db_t = g_t,   da_t = g_t h_{t-1},
  dh0 = a_0 g_0.

It is the same recurrence run backwards in time, so one kernel serves both passes, and the residuals are a and h
only (no per-step intermediates). (The float64 tests of both passes are in tests/test_scan.py.)

Context parallelism (`seq_axis`, inside `shard_map` with time sharded): each shard computes its summary
(prod a, last state from zero), the shards all-gather the summaries, each folds those of the shards before it
into its true initial state and scans from it. The backward pass does the same in reverse order.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from hrnn.ops import native
from hrnn.ops import pallas
from hrnn.config import SCAN_BACKENDS
from hrnn.errors import HrnnError

BACKENDS: tuple[str, ...] = SCAN_BACKENDS
"""Names accepted by `linear_recurrence(backend=...)` (also `ModelConfig.scan_backend`)."""

# Elements (batch x chunks x channels) one sequential step of the chunked kernel should cover, per platform. XLA
# on CPU runs a sequential loop at about 10 ns per step plus 2-3 ns per element, and cutting time into chunks
# makes every step's slices strided (3-6x slower per element here): one chunk is fastest for every shape measured
# (on the 2-core development CPU). GPUs and TPUs need wide steps: chunks give each step nc times more parallel work.
STEP_ELEMENTS = {"cpu": 1, "gpu": 1 << 16, "tpu": 1 << 16}

# A kernel runs s_t = a_t s_{t-1} + b_t over t = 0..T-1, or with `reverse` the backward pass's recurrence
# s_t = a_{t+1} s_{t+1} + b_t over t = T-1..0 (a_T = 1), from the carry s0:
#   kernel(a, b, s0, *, reverse, keep_states) -> (states [B, T, C] or None, final carry [B, C]).
Kernel = Callable[..., tuple[jax.Array | None, jax.Array]]


# The backend `backend=None` runs, per platform lowered for. CPU: the native kernels (near memory bandwidth). TPU:
# the Pallas kernel, one sequential pass at the HBM bandwidth (as the paper trained, with RecurrentGemma's TPU
# kernel). GPU: associative until the device benchmark (`hrnn bench device`) has measured the Pallas kernel on a
# GPU: XLA's associative scan is the one GPU path that has run on a GPU.
DEFAULT_BACKENDS = {"cpu": "chunked", "tpu": "pallas", "cuda": "associative", "rocm": "associative"}


def default_backend(platform: str | None = None) -> str:
  """The backend `backend=None` runs when lowered for `platform` (default: this process's default platform)."""
  platform = platform or jax.default_backend()
  return DEFAULT_BACKENDS["cuda" if platform == "gpu" else platform]


# --------------------------------------------------------------------------- reference backends (JAX autodiff)


def _combine(left, right):
  """Associative operator on (a, b) pairs: applying `left` then `right` equals (a_r a_l, a_r b_l + b_r)."""
  a_l, b_l = left
  a_r, b_r = right
  return a_r * a_l, a_r * b_l + b_r


def _scan_linear(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
  """Sequential reference: a lax.scan over time. a, b: [B, T, C]; h0: [B, C] -> h: [B, T, C]."""

  def step(h, ab):
    a_t, b_t = ab
    h = a_t * h + b_t
    return h, h

  _, h = lax.scan(step, h0, (jnp.moveaxis(a, 1, 0), jnp.moveaxis(b, 1, 0)))
  return jnp.moveaxis(h, 0, 1)


def _scan_associative(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
  """Blelloch scan with lax.associative_scan; h0 is folded into the first input."""
  b = b.at[:, 0].add(a[:, 0] * h0)
  _, h = lax.associative_scan(_combine, (a, b), axis=1)
  return h


_AUTODIFF = {"linear": _scan_linear, "associative": _scan_associative}


# --------------------------------------------------------------------------- the chunked kernel


def chunk_layout(batch: int, length: int, channels: int, platform: str | None = None) -> tuple[int, int]:
  """(nc, L): the number of chunks and their length for the chunked kernel on `platform` (default: this
  process's); nc * L >= length.

  nc aims at `STEP_ELEMENTS[platform] / (batch * channels)` (at most sqrt(length)); a divisor of `length` near it
  is preferred, which avoids padding the inputs.
  """
  target = STEP_ELEMENTS.get(platform or jax.default_backend(), STEP_ELEMENTS["gpu"])
  want = min(max(1, target // (batch * channels)), math.isqrt(length))
  if want <= 1:
    return 1, length
  divisors = [d for d in range(max(1, want // 2), 2 * want + 1) if length % d == 0]
  nc = min(divisors, key=lambda d: abs(d - want)) if divisors else want
  return nc, -(-length // nc)


def chunked_scan(a: jax.Array, b: jax.Array, s0: jax.Array, *, reverse: bool = False, keep_states: bool = True,
                 platform: str | None = None) -> tuple[jax.Array | None, jax.Array]:
  """The chunked kernel (see `Kernel`) as XLA loops, laid out for `platform` (`chunk_layout`): states [B, T, C]
  (None unless `keep_states`) and the final carry [B, C].

  Time is cut into nc chunks of length L (`chunk_layout`) and worked on in place as [B, nc, L, C]:
  (1) one sequential pass over L, all chunks at once, gives each chunk's summary (A = prod a, S = its final
  state from zero); (2) a sequential scan over the nc summaries gives each chunk's initial state; (3) a second
  pass over L writes the states. With one chunk (the CPU case) it is a single sequential pass.
  """
  batch, length, channels = a.shape
  nc, chunk = chunk_layout(batch, length, channels, platform)
  if reverse and nc > 1:  # chunks read their coefficients in place: shift them once
    a = pallas.shift_left(a)
  pad = nc * chunk - length
  if pad:  # a = 1, b = 0 leaves the state unchanged, in either direction: padding at the end is neutral
    a = jnp.pad(a, ((0, 0), (0, pad), (0, 0)), constant_values=1)
    b = jnp.pad(b, ((0, 0), (0, pad), (0, 0)))
  a = a.reshape(batch, nc, chunk, channels)
  b = b.reshape(batch, nc, chunk, channels)
  shape = (batch, nc, 1, channels)

  def position(i):
    return chunk - 1 - i if reverse else i

  def load(x, l):  # [B, nc, 1, C]: position l of every chunk
    return lax.dynamic_slice(x, (0, 0, l, 0), shape)

  def coefficient(l):
    if reverse and nc == 1:  # a_{t+1} read in place (1 past the end): no shifted copy of a
      return jnp.where(l + 1 < chunk, load(a, jnp.minimum(l + 1, chunk - 1)), 1)
    return load(a, l)

  def advance(i, s):
    l = position(i)
    return coefficient(l) * s + load(b, l)

  if nc > 1:
    def summarise(i, carry):
      decay, s = carry
      return decay * coefficient(position(i)), advance(i, s)

    ones = jnp.ones_like(load(a, 0))  # like a: keeps its varying mesh axes inside shard_map
    decay, state = lax.fori_loop(0, chunk, summarise, (ones, jnp.zeros_like(ones)))

    def across(s, summary):  # chunk c maps its initial state s to decay_c s + state_c
      decay_c, state_c = summary
      return decay_c * s + state_c, s

    final, starts = lax.scan(across, s0, (jnp.moveaxis(decay[:, :, 0], 1, 0), jnp.moveaxis(state[:, :, 0], 1, 0)),
                             reverse=reverse)
    starts = jnp.moveaxis(starts, 0, 1)[:, :, None]
    if not keep_states:
      return None, final
  else:
    starts = s0[:, None, None]
    if not keep_states:
      return None, lax.fori_loop(0, chunk, advance, starts)[:, 0, 0]

  def emit(i, carry):
    s, out = carry
    s = advance(i, s)
    return s, lax.dynamic_update_slice(out, s, (0, 0, position(i), 0))

  s, states = lax.fori_loop(0, chunk, emit, (starts, jnp.zeros_like(b)))
  states = states.reshape(batch, nc * chunk, channels)[:, :length]
  return states, (final if nc > 1 else s[:, 0, 0])


def kernel_gradient(kernel: Kernel, a: jax.Array, h: jax.Array, h_start: jax.Array, dh: jax.Array,
                    carry: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The custom VJP's backward pass with `kernel`: g from the reverse recurrence on dh entered with `carry`
  (= a_T g_T), then (da_t = g_t h_{t-1} with h_{-1} = h_start, db = g, dh0 = a_0 g_0)."""
  g, _ = kernel(a, dh, carry, reverse=True)
  h_prev = jnp.concatenate([h_start[:, None], h[:, :-1]], axis=1)
  return g * h_prev, g, a[:, 0] * g[:, 0]


def associative_kernel(a: jax.Array, b: jax.Array, s0: jax.Array, *, reverse: bool = False,
                       keep_states: bool = True) -> tuple[jax.Array | None, jax.Array]:
  """`lax.associative_scan` as a `Kernel` (the GPU default under the custom VJP: residuals a and h only, where
  autodiff of the scan keeps its log2(T) levels of partial products)."""
  if reverse:
    a = pallas.shift_left(a)
  edge = -1 if reverse else 0  # where s0 enters: s_edge = a_edge s0 + b_edge
  b = b.at[:, edge].add(a[:, edge] * s0)
  _, states = lax.associative_scan(_combine, (a, b), axis=1, reverse=reverse)
  return (states if keep_states else None), states[:, -1 - edge]


def _with_gradient(kernel: Kernel) -> tuple[Kernel, Callable]:
  return kernel, functools.partial(kernel_gradient, kernel)


def _kernels(backend: str | None) -> dict[str, tuple[Kernel, Callable]]:
  """{platform: (kernel, gradient)} of a kernel backend (None: the platforms' defaults, `DEFAULT_BACKENDS`).

  `chunked` runs on CPU in the native kernels (`hrnn.ops.native`, one fused pass for the gradient) when they could be
  built, else (and on GPU and TPU) as `chunked_scan` laid out for the platform. `pallas` is the TPU kernel on TPU
  (interpret mode on CPU) and the Triton kernel on GPU. Only the kernels of a default are traced for it.
  """
  chunked = {p: _with_gradient(functools.partial(chunked_scan, platform=p)) for p in ("cpu", "tpu", "gpu")}
  if native.available():
    chunked["cpu"] = native.scan, native.gradient
  table = {
      "chunked": {"cpu": chunked["cpu"], "tpu": chunked["tpu"], "cuda": chunked["gpu"], "rocm": chunked["gpu"]},
      "pallas": {"cpu": _with_gradient(functools.partial(pallas.tpu_scan, interpret=True)),
                 "tpu": _with_gradient(pallas.tpu_scan), "cuda": _with_gradient(pallas.gpu_scan),
                 "rocm": _with_gradient(pallas.gpu_scan)},
  }
  if backend is not None:
    return table[backend]
  associative = _with_gradient(associative_kernel)
  return {p: table[name][p] if name in table else associative for p, name in DEFAULT_BACKENDS.items()}


def _dispatch(backend: str | None, role: int, *args, **kw):
  """Runs the kernel (role 0) or gradient (role 1) of `backend` for the platform lowered for."""
  branches = {}
  for platform, pair in _kernels(backend).items():
    branches[platform] = functools.partial(pair[role], **kw)
  return lax.platform_dependent(*args, **branches)


# --------------------------------------------------------------------------- context parallelism


def shard_carry(decay: jax.Array, state: jax.Array, seq_axis: str, *, reverse: bool = False) -> jax.Array:
  """The carry entering this time shard from the shards before it (after it when `reverse`), inside `shard_map`.

  decay: [B, C] the product of a over this shard; state: [B, C] its final carry from zero (all-gathered).
  Shard j maps an incoming carry s to decay_j s + state_j; this folds the shards upstream of this one.
  Differentiable (JAX transposes the all-gather).
  """
  decays = lax.all_gather(decay, seq_axis)  # [S, B, C]
  states = lax.all_gather(state, seq_axis)
  index = lax.axis_index(seq_axis)
  carry = jnp.zeros_like(state)
  shards = range(decays.shape[0] - 1, -1, -1) if reverse else range(decays.shape[0])
  for j in shards:  # S (devices along the sequence axis) is small: unrolled
    upstream = j > index if reverse else j < index
    carry = jnp.where(upstream, decays[j] * carry + states[j], carry)
  return carry


# --------------------------------------------------------------------------- custom VJP of the kernel backends


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _kernel_recurrence(a, b, h0, backend, seq_axis):
  return _kernel_forward(a, b, h0, backend, seq_axis)[0]


def _kernel_forward(a, b, h0, backend, seq_axis):
  kernel = functools.partial(_dispatch, backend, 0)
  h_start = h0
  if seq_axis is not None:
    _, local = kernel(a, b, jnp.zeros_like(h0), keep_states=False)
    h_start = h0 + shard_carry(jnp.prod(a, axis=1), local, seq_axis)
  h, h_last = kernel(a, b, h_start)
  return (h, h_last), (a, h, h_start)


def _kernel_backward(backend, seq_axis, residuals, cotangents):
  a, h, h_start = residuals
  dh, dh_last = cotangents
  kernel, gradient = functools.partial(_dispatch, backend, 0), functools.partial(_dispatch, backend, 1)
  # g_t = dh_t + a_{t+1} g_{t+1}: the kernel's reverse recurrence on dh. The carry entering at the end, a_T g_T,
  # is dh_last (plus, sharded, what the later shards send back: the shard's map is q -> prod(a) q + a_0 g_0).
  carry = dh_last
  if seq_axis is not None:
    _, local = kernel(a, dh, dh_last, reverse=True, keep_states=False)
    carry = dh_last + shard_carry(jnp.prod(a, axis=1), a[:, 0] * local, seq_axis, reverse=True)
  da, db, dh0 = gradient(a, h, h_start, dh, carry)
  # Sharded, h0 is zero here (linear_recurrence folds a real h0 into b) and h_start depends on the other shards,
  # whose gradients the reverse carry above already delivered: nothing flows to h0.
  return da, db, dh0 if seq_axis is None else jnp.zeros_like(h_start)


_kernel_recurrence.defvjp(_kernel_forward, _kernel_backward)


# --------------------------------------------------------------------------- public entry point


class UnknownBackendError(HrnnError, ValueError):
  """A scan backend name that is not one of `BACKENDS`."""


def linear_recurrence(a: jax.Array, b: jax.Array, h0: jax.Array | None = None, *, backend: str | None = None,
                      seq_axis: str | None = None) -> tuple[jax.Array, jax.Array]:
  """Computes h_t = a_t * h_{t-1} + b_t for t = 0..T-1 with h_{-1} = h0 (zeros when None).

  Args:
    a: [batch, time, channels] decay (complex64 or float32).
    b: [batch, time, channels] input, same shape as `a` (both are cast to their common dtype).
    h0: optional [batch, channels] initial state.
    backend: one of `BACKENDS`, or None for the default of the platform lowered for (`DEFAULT_BACKENDS`).
    seq_axis: name of a mesh axis the time dimension is sharded over (inside `shard_map`); None when unsharded.
      With it, `h0` is the state before the *first* shard.

  Returns:
    (h, h_last): all states [batch, time, channels] and the final state [batch, channels] (of the local shard
    when `seq_axis` is set).
  """
  if a.shape != b.shape:
    raise ValueError(f"linear_recurrence: a has shape {a.shape} but b has shape {b.shape}")
  if a.ndim != 3 or a.shape[1] == 0:
    raise ValueError(f"linear_recurrence: expected [batch, time >= 1, channels], got shape {a.shape}")
  if backend is not None and backend not in BACKENDS:
    raise UnknownBackendError(f"scan backend {backend!r} is unknown; choose one of {', '.join(BACKENDS)} "
                              "(or none: the platform's default)")
  dtype = jnp.result_type(a, b)
  a, b = a.astype(dtype), b.astype(dtype)
  state_shape = (a.shape[0], a.shape[2])
  if h0 is not None and h0.shape != state_shape:
    raise ValueError(f"linear_recurrence: h0 has shape {h0.shape}, expected {state_shape}")
  # zeros_like keeps b's varying mesh axes inside shard_map: a loop's initial carry must have its outputs' type.
  zeros = jnp.zeros_like(b[:, 0])
  if seq_axis is not None and h0 is not None:
    # h0 enters on the first shard only: fold it into b_0 there (h_0 = a_0 h0 + b_0).
    first = lax.axis_index(seq_axis) == 0
    b = b.at[:, 0].add(jnp.where(first, a[:, 0] * h0.astype(dtype), 0))
    h0 = None
  h0 = zeros if h0 is None else h0.astype(dtype) + zeros
  if backend in _AUTODIFF:
    scan = _AUTODIFF[backend]
    if seq_axis is not None:
      h0 = shard_carry(jnp.prod(a, axis=1), scan(a, b, zeros)[:, -1], seq_axis)
    h = scan(a, b, h0)
    return h, h[:, -1]
  return _kernel_recurrence(a, b, h0, backend, seq_axis)
