"""HarmonicRNN: a U-Net of CG-LRU temporal blocks with causal pooling (paper Fig. 1b, reference.md section 1).

  tokens x_0..x_{T-1} in 0..255
  input   = [0, x_0, .., x_{T-2}]                       shift right, start token 0
  h       = Embedding(input)                           [B, T, d]
  h       = Level_0(h)                                 U-Net, below
  logits  = Dense_256(LN(h))                           [B, T, 256], logits[t] predicts x_t

  Level_i(h) (pool p_i):  h = Stack_down(h);  h = h + Up(Level_{i+1}(Down(h)));  h = Stack_up(h)
  Level_innermost(h):     h = Stack(h)

Inputs whose length is not a multiple of the total pool factor are right-padded inside and cropped back; because
the network is causal the padding never changes the outputs at real positions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hrnn.blocks import TemporalStack
from hrnn.config import ModelConfig
from hrnn.embedding import Embedding
from hrnn.pooling import DownPool, UpPool

START_TOKEN = 0


class Level(nnx.Module):
  """One U-Net level: a down stack, optionally the pooled inner level, an up stack."""

  def __init__(self, cfg: ModelConfig, level: int, *, rngs: nnx.Rngs):
    num_blocks = cfg.num_blocks(level)
    innermost = level == len(cfg.pool_factors)
    self.down_stack = TemporalStack(cfg, cfg.blocks[level], num_blocks, rngs=rngs)
    if innermost:
      self.down_pool = self.inner = self.up_pool = self.up_stack = None
    else:
      p = cfg.pool_factors[level]
      self.down_pool = DownPool(cfg.width, p, cfg.groups, rngs=rngs)
      self.inner = Level(cfg, level + 1, rngs=rngs)
      self.up_pool = UpPool(cfg.width, p, cfg.groups, num_blocks, rngs=rngs)
      self.up_stack = TemporalStack(cfg, cfg.blocks[level], num_blocks, rngs=rngs)

  def __call__(self, x: jax.Array, *, seq_axis: str | None = None) -> jax.Array:
    x = self.down_stack(x, seq_axis=seq_axis)
    if self.inner is None:
      return x
    pooled = self.up_pool(self.inner(self.down_pool(x, seq_axis=seq_axis), seq_axis=seq_axis))
    return self.up_stack(x + pooled, seq_axis=seq_axis)


class HarmonicRNN(nnx.Module):
  """Autoregressive model over 8-bit tokens: int [B, T] -> logits [B, T, num_classes] (position t predicts x_t)."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed = Embedding(cfg.embedding, cfg.width, cfg.num_classes, cfg.embedding_dropout, rngs=rngs)
    self.net = Level(cfg, 0, rngs=rngs)
    self.final_norm = nnx.LayerNorm(cfg.width, rngs=rngs)
    self.head = nnx.Linear(cfg.width, cfg.num_classes, rngs=rngs)

  def __call__(self, tokens: jax.Array, *, seq_axis: str | None = None) -> jax.Array:
    """tokens: int [B, T]. With `seq_axis` (inside shard_map, time sharded), T is the local shard length, must
    be a multiple of `cfg.total_pool`, and the input shift takes the previous shard's last token."""
    length = tokens.shape[1]
    inputs = shift_right(tokens, seq_axis)
    if seq_axis is None:
      inputs = pad_to_multiple(inputs, self.cfg.total_pool)
    elif length % self.cfg.total_pool:
      raise ValueError(f"sharded forward needs a local length that is a multiple of {self.cfg.total_pool}, "
                       f"got {length}; pad the sequence with hrnn.sharding.pad_for_mesh first")
    x = self.net(self.embed(inputs), seq_axis=seq_axis)
    return self.head(self.final_norm(x))[:, :length]


def shift_right(tokens: jax.Array, seq_axis: str | None = None) -> jax.Array:
  """[x_0 .. x_{T-1}] -> [START, x_0 .. x_{T-2}]; when sharded, shard i starts with shard i-1's last token."""
  if seq_axis is None:
    first = jnp.full_like(tokens[:, :1], START_TOKEN)
  else:
    shards = jax.lax.axis_size(seq_axis)
    received = jax.lax.ppermute(tokens[:, -1:], seq_axis, perm=[(i, i + 1) for i in range(shards - 1)])
    # ppermute leaves zeros where nothing is received: shard 0 gets START_TOKEN = 0 for free.
    first = received + START_TOKEN
  return jnp.concatenate([first, tokens[:, :-1]], axis=1)


def pad_to_multiple(x: jax.Array, multiple: int, axis: int = 1) -> jax.Array:
  """Right-pads `axis` with zeros up to a multiple of `multiple`."""
  extra = -x.shape[axis] % multiple
  if not extra:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, extra)
  return jnp.pad(x, widths)


def nll_bits(logits: jax.Array, tokens: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Summed negative log-likelihood in bits and the number of real tokens.

  logits [B, T, K], tokens int [B, T], mask [B, T] (1 = real token, 0 = padding) or None for all real.
  Returns (sum of -log2 p(x_t | x_<t) over real tokens, count); their ratio is bits per sample.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nats = -jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]
  mask = jnp.ones_like(nats) if mask is None else mask.astype(jnp.float32)
  return jnp.sum(nats * mask) / jnp.log(2.0), jnp.sum(mask)


def loss_bits(model: HarmonicRNN, tokens: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Mean NLL in bits per real sample: the training objective."""
  total, count = nll_bits(model(tokens), tokens, mask)
  return total / jnp.maximum(count, 1.0)


def count_params(module: nnx.Module) -> int:
  """Number of scalar parameters (nnx.Param leaves) of a module."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
