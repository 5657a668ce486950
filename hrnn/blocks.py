"""Residual blocks: the temporal block of Fig. 1a is one recurrent block followed by one MLP block.

  y = x + Dropout( W_o ( layer(LN(x)) * gelu(W_g LN(x)) ) )

`layer` is the CG-LRU (output width d) for a recurrent block and a Dense d -> 2d for an MLP block (no activation
inside: the gelu gate supplies it). W_o is initialised with variance scaling at scale 1 / num_blocks of the level
so that the residual stream keeps unit scale at init.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hrnn import lru, scan
from hrnn.config import ModelConfig
from hrnn.initializers import scaled_init
from hrnn.lru import CGLRU


class ResidualBlock(nnx.Module):
  """One residual block; `kind` is "recurrent" (CG-LRU) or "mlp". Maps [B, T, d] -> [B, T, d]."""

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

  def branch(self, x: jax.Array, mixed: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """The residual branch given x and layer(LN(x)) (shared by the parallel and the step-wise forward); dropout
    draws from `dropout_key` when given, else from the block's own RNG stream."""
    return self.dropout(self.out(mixed * jax.nn.gelu(self.gate(self.norm(x)))), rngs=dropout_key)

  def forward(self, x: jax.Array, state: jax.Array | None = None, *, valid: jax.Array | None = None,
              seq_axis: str | None = None,
              dropout_key: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
    """x [B, T, d] -> (x + branch, the CG-LRU's last state [B, n_c] or None for an MLP block).

    `state` is the CG-LRU state before the first step (zeros when None), `valid` [T] marks padded steps (0) that
    leave it unchanged; with remat "recurrence" the CG-LRU is recomputed in the backward pass, not stored.
    """
    y = self.norm(x)
    if self.kind == "mlp":
      mixed = self.layer(y)
    elif self.remat == "recurrence":
      mixed, state = nnx.remat(lambda layer, y, h: layer(y, h, valid=valid, seq_axis=seq_axis))(self.layer, y, state)
    else:
      mixed, state = self.layer(y, state, valid=valid, seq_axis=seq_axis)
    return x + self.branch(x, mixed, dropout_key), state

  def __call__(self, x: jax.Array, *, seq_axis: str | None = None) -> jax.Array:
    if self.remat in ("block", "stack"):  # "stack": recomputed blocks inside a recomputed stack
      return nnx.remat(lambda block, x: block.forward(x, seq_axis=seq_axis)[0])(self, x)
    return self.forward(x, seq_axis=seq_axis)[0]

  def dropout_key(self) -> jax.Array | None:
    """One key from the block's dropout stream when dropout is active (training), else None (nothing drawn)."""
    if self.dropout.deterministic or self.dropout.rate == 0.0:
      return None
    return self.dropout.rngs()

  def step_params(self) -> dict:
    """Plain arrays for `block_step`. The layer's input matmul (the CG-LRU's W_u, or the MLP's Dense) and the gate
    matmul share LN(x): they are fused into one [d, n + w] matmul with the LayerNorm scale and bias folded in,
    LN(x) W + c = x_hat (diag(s) W) + (beta W + c)."""
    first = self.layer.in_proj if self.kind == "recurrent" else self.layer
    w = jnp.concatenate([first.kernel[...], self.gate.kernel[...]], axis=1)
    b = jnp.concatenate([first.bias[...], self.gate.bias[...]])
    params = {
        "in_w": self.norm.scale[...][:, None] * w,
        "in_b": self.norm.bias[...] @ w + b,
        "out_w": self.out.kernel[...],
        "out_b": self.out.bias[...],
        "epsilon": jnp.float32(self.norm.epsilon),
    }
    if self.kind == "recurrent":
      params["lru"] = self.layer.step_params()
    return params

  def prefill(self, x: jax.Array, length: int) -> tuple[jax.Array, jax.Array | None]:
    """Parallel forward of x [B, T, d] that also returns the step state after the first `length` steps."""
    y = self.norm(x)
    if self.kind == "recurrent":
      mixed, state = self.layer.prefill(y, length)
    else:
      mixed, state = self.layer(y), None
    return x + self.branch(x, mixed), state


class TemporalStack(nnx.Module):
  """`n` temporal blocks: (recurrent, MLP) residual pairs applied in order.

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

  def _forward(self, x: jax.Array, seq_axis: str | None) -> jax.Array:
    graphdefs, states = zip(*(nnx.split(blocks) for blocks in (self.recurrent, self.mlp)))  # states [n, ...]
    length = x.shape[1]
    chunked = self.chunk is not None and length > self.chunk
    if chunked:
      x, valid = time_chunks(x, -(-length // self.chunk))

    def pair(x, pair_states):
      recurrent, mlp = (nnx.merge(graphdef, state) for graphdef, state in zip(graphdefs, pair_states))
      if chunked:
        x = pair_over_chunks(recurrent, mlp, x, valid, seq_axis)
      else:
        x = mlp(recurrent(x, seq_axis=seq_axis), seq_axis=seq_axis)
      return x, tuple(nnx.state(block, nnx.RngCount) for block in (recurrent, mlp))  # dropout draws advance

    x, counts = jax.lax.scan(pair, x, states)
    nnx.update(self.recurrent, counts[0])
    nnx.update(self.mlp, counts[1])
    return from_time_chunks(x, length) if chunked else x

  def __call__(self, x: jax.Array, *, seq_axis: str | None = None) -> jax.Array:
    if not self.n:
      return x
    if self.remat == "stack":  # the backward pass stores only the stack's input
      return nnx.remat(lambda stack, x: stack._forward(x, seq_axis))(self, x)
    return self._forward(x, seq_axis)

  def blocks(self) -> list[ResidualBlock]:
    """The residual blocks in order (recurrent, MLP, recurrent, ...), each a module of its own slice of the stacked
    arrays (a copy: for reading, e.g. step parameters and prefill)."""
    stacks = [nnx.split(blocks) for blocks in (self.recurrent, self.mlp)] if self.n else []
    return [nnx.merge(graphdef, jax.tree.map(lambda x: x[i], state))
            for i in range(self.n) for graphdef, state in stacks]

  def step_params(self) -> list[dict]:
    return [block.step_params() for block in self.blocks()]

  def prefill(self, x: jax.Array, length: int) -> tuple[jax.Array, list]:
    """Parallel forward that also returns the step states of the blocks after the first `length` steps."""
    states = []
    for block in self.blocks():
      x, state = block.prefill(x, length)
      states.append(state)
    return x, states


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
                     seq_axis: str | None) -> jax.Array:
  """One temporal block over time chunks [n, B, L, d] (`time_chunks`): a `lax.scan` over the chunks that carries
  the CG-LRU state, each chunk recomputed in the backward pass. The backward pass stores the chunks' inputs and
  the states between them, and its transients are one chunk's, whatever the sequence length.

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

  _, chunks = jax.lax.scan(jax.checkpoint(chunk, prevent_cse=False), h,
                           (jnp.arange(chunks.shape[0]), chunks, valid))
  return chunks


def entering_state(recurrent: ResidualBlock, chunks: jax.Array, valid: jax.Array, seq_axis: str) -> jax.Array:
  """The CG-LRU state entering this time shard: each shard folds its chunks into (prod a, last state from 0),
  and `hrnn.scan.shard_carry` combines the summaries of the shards before it."""
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


def normalize(x: jax.Array, epsilon: jax.Array) -> jax.Array:
  """LayerNorm without scale and bias, (x - mean) / sqrt(var + eps) over the last axis, var = E[x^2] - mean^2
  (the fast variance of nnx.LayerNorm)."""
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.maximum(jnp.mean(jnp.square(x), axis=-1, keepdims=True) - jnp.square(mean), 0.0)
  return (x - mean) * jax.lax.rsqrt(var + epsilon)


def init_block_state(params: dict, batch: int) -> jax.Array | None:
  """Zero step state of a residual block: the CG-LRU state, or None for an (stateless) MLP block."""
  return lru.init_state(params["lru"], batch) if "lru" in params else None


def block_step(params: dict, state: jax.Array | None, x: jax.Array) -> tuple[jax.Array | None, jax.Array]:
  """One time step of a residual block, x [B, d] -> (state, y [B, d]); `params` from `ResidualBlock.step_params`.

    [layer input, gate] = LN(x) [W_layer, W_g];  y = x + W_o (layer(...) * gelu(gate))   (no dropout: inference)
  """
  fused = normalize(x, params["epsilon"]) @ params["in_w"] + params["in_b"]
  width = params["out_w"].shape[0]
  layer_in, gate = fused[:, :-width], fused[:, -width:]
  if "lru" in params:
    state, mixed = lru.step(params["lru"], state, layer_in)
  else:
    mixed = layer_in
  # The residual add goes last: XLA:CPU runs `x + m @ W + b` (add fused into the dot) about 2x slower.
  return state, x + ((mixed * jax.nn.gelu(gate)) @ params["out_w"] + params["out_b"])


def init_stack_state(params: list[dict], batch: int) -> list:
  return [init_block_state(block, batch) for block in params]


def stack_step(params: list[dict], state: list, x: jax.Array) -> tuple[list, jax.Array]:
  """One time step through a temporal stack, x [B, d] -> (states, y [B, d])."""
  new_state = []
  for block, block_state in zip(params, state):
    block_state, x = block_step(block, block_state, x)
    new_state.append(block_state)
  return new_state, x
