"""The diagonal linear recurrence h_t = a_t * h_{t-1} + b_t, the one sequential operation of HarmonicRNN.

Everything in the model that mixes information over time goes through `linear_recurrence`. Backends compute the
same function; `seq_axis` makes it context-parallel (reference.md section 6):

  each shard scans its piece from h = 0 and also returns A = prod_t a_t over the piece; shards all-gather
  (A, h_last); shard i folds the summaries of shards j < i into its true initial state h0_i; its outputs become
  h_t + cumprod(a)_t * h0_i.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BACKENDS = ("linear", "associative")


def default_backend() -> str:
  """Backend used when none is requested."""
  return "associative"


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

  _, h = jax.lax.scan(step, h0, (jnp.moveaxis(a, 1, 0), jnp.moveaxis(b, 1, 0)))
  return jnp.moveaxis(h, 0, 1)


def _scan_associative(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
  """Blelloch scan with lax.associative_scan; h0 is folded into the first input."""
  b = b.at[:, 0].add(a[:, 0] * h0)
  _, h = jax.lax.associative_scan(_combine, (a, b), axis=1)
  return h


_IMPLEMENTATIONS = {"linear": _scan_linear, "associative": _scan_associative}


def _local_recurrence(a, b, h0, backend):
  if a.shape != b.shape:
    raise ValueError(f"linear_recurrence: a has shape {a.shape} but b has shape {b.shape}")
  if a.ndim != 3:
    raise ValueError(f"linear_recurrence: expected [batch, time, channels], got shape {a.shape}")
  backend = backend or default_backend()
  if backend not in _IMPLEMENTATIONS:
    raise ValueError(f"linear_recurrence: unknown backend {backend!r}; choose from {tuple(_IMPLEMENTATIONS)}")
  if h0 is None:
    h0 = jnp.zeros((a.shape[0], a.shape[2]), b.dtype)
  return _IMPLEMENTATIONS[backend](a, b, h0.astype(b.dtype))


def _shard_initial_state(a_prod: jax.Array, h_last: jax.Array, h0: jax.Array | None, seq_axis: str) -> jax.Array:
  """True initial state of this shard from the (prod a, last h) summaries of all shards (all-gathered)."""
  a_all = jax.lax.all_gather(a_prod, seq_axis)  # [S, B, C]
  h_all = jax.lax.all_gather(h_last, seq_axis)  # [S, B, C]
  index = jax.lax.axis_index(seq_axis)
  h = jnp.zeros_like(h_last) if h0 is None else h0.astype(h_last.dtype)
  for j in range(a_all.shape[0]):  # S is small (devices along the sequence axis); unrolled
    h = jnp.where(j < index, a_all[j] * h + h_all[j], h)
  return h


def linear_recurrence(a: jax.Array, b: jax.Array, h0: jax.Array | None = None, *, backend: str | None = None,
                      seq_axis: str | None = None) -> tuple[jax.Array, jax.Array]:
  """Computes h_t = a_t * h_{t-1} + b_t for t = 0..T-1 with h_{-1} = h0 (zeros when None).

  Args:
    a: [batch, time, channels] decay (complex64 or float32).
    b: [batch, time, channels] input, same shape and dtype as `a`.
    h0: optional [batch, channels] initial state.
    backend: one of `BACKENDS`, or None for `default_backend()`.
    seq_axis: name of a mesh axis the time dimension is sharded over (inside `shard_map`); None when unsharded.
      With it, `h0` is the state before the *first* shard.

  Returns:
    (h, h_last): all states [batch, time, channels] and the final state [batch, channels] (of the local shard
    when `seq_axis` is set).
  """
  if seq_axis is None:
    h = _local_recurrence(a, b, h0, backend)
    return h, h[:, -1]
  h_local = _local_recurrence(a, b, None, backend)
  a_cum = jnp.cumprod(a, axis=1)  # [B, T, C]: product of a up to t within the shard
  h_start = _shard_initial_state(a_cum[:, -1], h_local[:, -1], h0, seq_axis)
  h = h_local + a_cum * h_start[:, None, :]
  return h, h[:, -1]
