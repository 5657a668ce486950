"""Residual blocks: the temporal block of Fig. 1a is one recurrent block followed by one MLP block.

  y = x + Dropout( W_o ( layer(LN(x)) * gelu(W_g LN(x)) ) )

`layer` is the CG-LRU (output width d) for a recurrent block and a Dense d -> 2d for an MLP block (no activation
inside: the gelu gate supplies it). W_o is initialised with variance scaling at scale 1 / num_blocks of the level
so that the residual stream keeps unit scale at init (docs/model.md, "Residual blocks").

`ResidualBlock` and `TemporalStack` each hold both forms: the parallel form (`__call__`, which also returns the
CG-LRU states after the last real step) and the step form (`decode_params`, `init_state`, `step`). Shapes follow
`hrnn.model.array_typing`.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from hrnn.ops import scan
from hrnn.model.array_typing import Activations, Frame, RNNState, Valid
from hrnn.config import ModelConfig
from hrnn.model.initializers import scaled_init
from hrnn.model.lru import CGLRU, CGLRUDecode


@flax.struct.dataclass
class BlockDecode:
  """The step form's arrays of a residual block (`ResidualBlock.decode_params`).

  The layer's input matmul (the CG-LRU's W_u, or the MLP's Dense) and the gate matmul W_g share LN(x): they are
  one [d, n + w] matmul with the LayerNorm scale s and bias beta folded in, LN(x) W + c = x_hat (diag(s) W) +
  (beta W + c), where x_hat is LN(x) before its scale and bias.
  """

  in_w: jax.Array  # [d, n + w]: diag(s) [W_layer, W_g] (n = n_h for a recurrent block, 2d for an MLP block)
  in_b: jax.Array  # [n + w]
  out_w: jax.Array  # [w, d], W_o
  out_b: jax.Array  # [d]
  lru: CGLRUDecode | None  # the CG-LRU's arrays; None for an MLP block
  epsilon: float = flax.struct.field(pytree_node=False)  # the LayerNorm's


def standardize(x: jax.Array, epsilon: float) -> jax.Array:
  """LN(x) before its scale and bias (the step form folds those into the next matmul): nnx.LayerNorm itself,
  without parameters, so that both forms normalise with the same code."""
  return nnx.LayerNorm(x.shape[-1], epsilon=epsilon, use_scale=False, use_bias=False, rngs=None)(x)


class ResidualBlock(nnx.Module):
  """One residual block; `kind` is "recurrent" (CG-LRU) or "mlp". Maps [B, T, d] -> [B, T, d].

  State: the CG-LRU's h_t, complex64 [B, n_c], for a recurrent block; None for an MLP block.
  """

  def __init__(self, cfg: ModelConfig, kind: str, num_blocks: int, *, rngs: nnx.Rngs):
    d = cfg.width
    self.kind = kind
    self.remat = cfg.remat
    self.norm = nnx.LayerNorm(d, rngs=rngs)
    if kind == "recurrent":
      self.layer = CGLRU(d, cfg.lru_width, cfg.gate_blocks, r_min=cfg.r_min, r_max=cfg.r_max,
                         max_phase=cfg.max_phase, scan_backend=cfg.scan_backend, rngs=rngs)
      w = d
    elif kind == "mlp":
      self.layer = nnx.Linear(d, 2 * d, rngs=rngs)
      w = 2 * d
    else:
      raise ValueError(f"unknown residual block kind {kind!r}")
    self.gate = nnx.Linear(d, w, rngs=rngs)
    self.out = nnx.Linear(w, d, kernel_init=scaled_init(num_blocks), rngs=rngs)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)

  # ---- parallel form ----

  def forward(self, x: Activations, state: RNNState | None = None, *, valid: Valid | None = None,
              seq_axis: str | None = None,
              dropout_key: jax.Array | None = None) -> tuple[Activations, RNNState | None]:
    """x [B, T, d] -> (x + branch, the CG-LRU's last state [B, n_c] or None for an MLP block), without the block's
    own rematerialisation (for callers that recompute it themselves).

    `state` is the CG-LRU state before the first step (zeros when None), `valid` [T] marks padded steps (0) that
    leave it unchanged; with remat "recurrence" the CG-LRU is recomputed in the backward pass, not stored. Dropout
    draws from `dropout_key` when given, else from the block's own RNG stream.
    """
    y = self.norm(x)
    if self.kind == "mlp":
      mixed = self.layer(y)
    elif self.remat == "recurrence":
      mixed, state = nnx.remat(lambda layer, y, h: layer(y, h, valid=valid, seq_axis=seq_axis))(self.layer, y, state)
    else:
      mixed, state = self.layer(y, state, valid=valid, seq_axis=seq_axis)
    branch = self.dropout(self.out(mixed * jax.nn.gelu(self.gate(y))), rngs=dropout_key)
    return x + branch, state

  def __call__(self, x: Activations, *, valid: Valid | None = None,
               seq_axis: str | None = None) -> tuple[Activations, RNNState | None]:
    """`forward` from a zero state, recomputed in the backward pass under remat "block" and "stack"."""
    if self.remat in ("block", "stack"):  # "stack": recomputed blocks inside a recomputed stack
      return nnx.remat(lambda block, x, valid: block.forward(x, valid=valid, seq_axis=seq_axis))(self, x, valid)
    return self.forward(x, valid=valid, seq_axis=seq_axis)

  def dropout_key(self) -> jax.Array | None:
    """One key from the block's dropout stream when dropout is active (training), else None (nothing drawn)."""
    if self.dropout.deterministic or self.dropout.rate == 0.0:
      return None
    return self.dropout.rngs()

  # ---- step form (inference: no dropout) ----

  def decode_params(self) -> BlockDecode:
    first = self.layer.in_proj if self.kind == "recurrent" else self.layer
    w = jnp.concatenate([first.kernel[...], self.gate.kernel[...]], axis=1)
    b = jnp.concatenate([first.bias[...], self.gate.bias[...]])
    return BlockDecode(
        in_w=self.norm.scale[...][:, None] * w, in_b=self.norm.bias[...] @ w + b,
        out_w=self.out.kernel[...], out_b=self.out.bias[...],
        lru=self.layer.decode_params() if self.kind == "recurrent" else None, epsilon=self.norm.epsilon)

  @staticmethod
  def init_state(params: BlockDecode, batch: int) -> RNNState | None:
    return None if params.lru is None else CGLRU.init_state(params.lru, batch)

  @staticmethod
  def step(params: BlockDecode, state: RNNState | None, x: Frame) -> tuple[RNNState | None, Frame]:
    """One time step, x_t [B, d] -> (state, y_t [B, d]):

      [layer input, gate] = LN(x) [W_layer, W_g];  y = x + W_o (layer(layer input) * gelu(gate))
    """
    fused = standardize(x, params.epsilon) @ params.in_w + params.in_b
    width = params.out_w.shape[0]
    layer_in, gate = fused[:, :-width], fused[:, -width:]
    if params.lru is None:
      mixed = layer_in
    else:
      state, mixed = CGLRU.step(params.lru, state, layer_in)
    # The residual add goes last: XLA:CPU runs `x + m @ W + b` (add fused into the dot) about 2x slower.
    return state, x + ((mixed * jax.nn.gelu(gate)) @ params.out_w + params.out_b)


class StackState(NamedTuple):
  """Step state of a temporal stack: h[i], complex64 [B, n_c], the CG-LRU state of its i-th recurrent block (its
  MLP blocks have no state)."""

  h: tuple[RNNState, ...]


class TemporalStack(nnx.Module):
  """`n` temporal blocks: (recurrent, MLP) residual pairs applied in order. State: `StackState`.

  The n recurrent blocks are one `ResidualBlock` module whose every array (parameters, dropout RNG streams) has a
  leading axis n, and so are the n MLP blocks (`stacked`). The forward pass is one
  `lax.scan` over the pairs: XLA compiles one pair instead of n unrolled copies, and the optimiser updates a few
  hundred stacked arrays instead of thousands of small ones (together most of the paper model's compile time).

  With `remat_chunk` (remat "block" or "stack") and inputs longer than it, each pair runs over time chunks
  (`pair_over_chunks`), and the stack keeps its activations in chunks from its input to its output.
  """

  def __init__(self, cfg: ModelConfig, n: int, num_blocks: int, *, rngs: nnx.Rngs):
    self.n = n
    self.remat = cfg.remat
    self.chunk = cfg.remat_chunk
    # Initialised block by block in network order (each with its own parameters and dropout stream), then stacked.
    blocks = [ResidualBlock(cfg, kind, num_blocks, rngs=rngs) for _ in range(n) for kind in ("recurrent", "mlp")]
    self.recurrent = stacked(blocks[0::2]) if n else None
    self.mlp = stacked(blocks[1::2]) if n else None

  # ---- parallel form ----

  def _forward(self, x: Activations, valid: Valid | None, seq_axis: str | None) -> tuple[Activations, jax.Array]:
    """(y, the recurrent blocks' last states stacked [n, B, n_c])."""
    graphdefs, states = zip(*(nnx.split(blocks) for blocks in (self.recurrent, self.mlp)))  # states [n, ...]
    length = x.shape[1]
    chunked = self.chunk is not None and length > self.chunk
    if chunked:
      n_chunks = -(-length // self.chunk)
      x, chunk_valid = time_chunks(x, n_chunks)
      if valid is not None:
        chunk_valid = chunk_valid * time_chunks(valid[None], n_chunks)[0][:, 0]

    def pair(x, pair_states):
      recurrent, mlp = (nnx.merge(graphdef, state) for graphdef, state in zip(graphdefs, pair_states))
      if chunked:
        x, h = pair_over_chunks(recurrent, mlp, x, chunk_valid, seq_axis)
      else:
        x, h = recurrent(x, valid=valid, seq_axis=seq_axis)
        x, _ = mlp(x, seq_axis=seq_axis)
      counts = tuple(nnx.state(block, nnx.RngCount) for block in (recurrent, mlp))  # dropout draws advance
      return x, (counts, h)

    x, (counts, h) = jax.lax.scan(pair, x, states)
    nnx.update(self.recurrent, counts[0])
    nnx.update(self.mlp, counts[1])
    return (from_time_chunks(x, length) if chunked else x), h

  def __call__(self, x: Activations, *, length: int | None = None,
               seq_axis: str | None = None) -> tuple[Activations, StackState]:
    """x [B, T, d] -> (y [B, T, d], the state after the first `length` steps; None: all T).

    The steps from `length` on are padding: they leave the state unchanged (and their outputs are not meaningful
    to a caller that asks for the state).
    """
    if not self.n:
      return x, StackState(())
    valid = None if length in (None, x.shape[1]) else (jnp.arange(x.shape[1]) < length).astype(jnp.float32)
    if self.remat == "stack":  # the backward pass stores only the stack's input
      x, h = nnx.remat(lambda stack, x, valid: stack._forward(x, valid, seq_axis))(self, x, valid)
    else:
      x, h = self._forward(x, valid, seq_axis)
    return x, StackState(tuple(h))

  def blocks(self) -> list[ResidualBlock]:
    """The residual blocks in order (recurrent, MLP, recurrent, ...), each a module of its own slice of the stacked
    arrays (a copy: for reading, e.g. the step form's arrays)."""
    stacks = [nnx.split(blocks) for blocks in (self.recurrent, self.mlp)] if self.n else []
    return [nnx.merge(graphdef, jax.tree.map(lambda x: x[i], state))
            for i in range(self.n) for graphdef, state in stacks]

  # ---- step form ----

  def decode_params(self) -> tuple[BlockDecode, ...]:
    """The blocks' step-form arrays in order (recurrent, MLP, recurrent, ...)."""
    return tuple(block.decode_params() for block in self.blocks())

  @staticmethod
  def init_state(params: tuple[BlockDecode, ...], batch: int) -> StackState:
    return StackState(tuple(CGLRU.init_state(block.lru, batch) for block in params if block.lru is not None))

  @staticmethod
  def step(params: tuple[BlockDecode, ...], state: StackState, x: Frame) -> tuple[StackState, Frame]:
    """One time step through the blocks in order, x_t [B, d] -> (state, y_t [B, d])."""
    states, new = iter(state.h), []
    for block in params:
      if block.lru is None:
        _, x = ResidualBlock.step(block, None, x)
      else:
        h, x = ResidualBlock.step(block, next(states), x)
        new.append(h)
    return StackState(tuple(new)), x


def stacked(modules: list[nnx.Module]) -> nnx.Module:
  """Structurally identical modules as one module whose arrays are theirs stacked along a new leading axis."""
  graphdef, _ = nnx.split(modules[0])
  return nnx.merge(graphdef, jax.tree.map(lambda *xs: jnp.stack(xs), *(nnx.state(m) for m in modules)))


def time_chunks(x: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  """[B, T, ...] -> ([n, B, L, ...], valid [n, L]): n chunks of L = ceil(T / n) steps, the last zero-padded;
  valid is 1 at real steps and 0 at the padding."""
  length = x.shape[1]
  size = -(-length // n)
  x = jnp.pad(x, [(0, 0), (0, n * size - length)] + [(0, 0)] * (x.ndim - 2))
  valid = (jnp.arange(n * size) < length).astype(jnp.float32).reshape(n, size)
  return jnp.swapaxes(x.reshape(x.shape[0], n, size, *x.shape[2:]), 0, 1), valid


def from_time_chunks(chunks: jax.Array, length: int) -> jax.Array:
  """The inverse of `time_chunks`: [n, B, L, ...] -> [B, length, ...]."""
  x = jnp.swapaxes(chunks, 0, 1)
  return x.reshape(x.shape[0], -1, *x.shape[3:])[:, :length]


def zero_state(x: jax.Array, channels: int) -> jax.Array:
  """A zero CG-LRU state [B, channels] (complex64) for inputs x [B, T, d]; derived from x so that inside
  `shard_map` it varies over the same mesh axes as x (a loop carry must keep its type)."""
  return jnp.zeros_like(x[:, 0, :1], jnp.complex64) + jnp.zeros(channels, jnp.complex64)


def pair_over_chunks(recurrent: ResidualBlock, mlp: ResidualBlock, chunks: jax.Array, valid: jax.Array,
                     seq_axis: str | None) -> tuple[jax.Array, RNNState]:
  """One temporal block over time chunks [n, B, L, d] (`time_chunks`) -> (chunks out, the CG-LRU's last state): a
  `lax.scan` over the chunks that carries the CG-LRU state, each chunk recomputed in the backward pass. The
  backward pass stores the chunks' inputs and the states between them, and its transients are one chunk's,
  whatever the sequence length.

  Time-sharded, the state entering this shard comes first (`entering_state`). Dropout draws one key per block and
  call and folds in the chunk index, so its masks (not their distribution) depend on the chunking, as they do on
  the sharding.
  """
  keys = [block.dropout_key() for block in (recurrent, mlp)]
  if seq_axis is None:
    h = zero_state(chunks[0], recurrent.layer.n_c)
  else:
    h = entering_state(recurrent, chunks, valid, seq_axis)

  def chunk(h, inputs):
    i, x, valid_c = inputs
    x, h = recurrent.forward(x, h, valid=valid_c, dropout_key=fold_in(keys[0], i))
    x, _ = mlp.forward(x, dropout_key=fold_in(keys[1], i))
    return h, x

  h, chunks = jax.lax.scan(jax.checkpoint(chunk, prevent_cse=False), h,
                           (jnp.arange(chunks.shape[0]), chunks, valid))
  return chunks, h


def entering_state(recurrent: ResidualBlock, chunks: jax.Array, valid: jax.Array, seq_axis: str) -> jax.Array:
  """The CG-LRU state entering this time shard: each shard folds its chunks into (prod a, last state from 0),
  and `hrnn.ops.scan.shard_carry` combines the summaries of the shards before it."""
  layer = recurrent.layer

  def summarise(carry, inputs):
    decay, h = carry
    x, valid_c = inputs
    a, b = layer.coefficients(recurrent.norm(x), valid_c)
    _, h = scan.linear_recurrence(a, b, h, backend=layer.scan_backend)
    return (decay * jnp.prod(a, axis=1), h), None

  h = zero_state(chunks[0], layer.n_c)
  (decay, h), _ = jax.lax.scan(jax.checkpoint(summarise, prevent_cse=False), (jnp.ones_like(h), h), (chunks, valid))
  return scan.shard_carry(decay, h, seq_axis)


def fold_in(key: jax.Array | None, i: jax.Array) -> jax.Array | None:
  return None if key is None else jax.random.fold_in(key, i)
