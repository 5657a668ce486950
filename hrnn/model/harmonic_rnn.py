"""HarmonicRNN: a U-Net of CG-LRU temporal blocks with causal pooling (paper Fig. 1b; docs/model.md).

  tokens x_0..x_{T-1} in 0..255
  input   = [0, x_0, .., x_{T-2}]                       shift right, start token 0
  h       = Embedding(input)                           [B, T, d]
  h       = Level_0(h)                                 U-Net, below
  logits  = Dense_256(LN(h))                           [B, T, 256], logits[t] predicts x_t

  Level_i(h) (pool p_i):  h = Stack_down(h);  h = h + Up(Level_{i+1}(Down(h)));  h = Stack_up(h)
  Level_innermost(h):     h = Stack(h)

Inputs whose length is not a multiple of the total pool factor are right-padded inside and cropped back; because
the network is causal the padding never changes the outputs at real positions.

Like its layers, `Level` and `HarmonicRNN` hold a parallel form (`__call__`; `HarmonicRNN.prefill` is the same
forward returning the step state after the tokens) and a step form (`decode_params`, `init_state`, `step`, one
token at a time; `hrnn.model.sampling` drives it). Shapes follow `hrnn.model.array_typing`.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from hrnn.model.array_typing import Activations, Frame, Logits, StepLogits, Token, Tokens
from hrnn.model.blocks import BlockDecode, StackState, TemporalStack, standardize
from hrnn.config import ModelConfig
from hrnn.model.embedding import Embedding
from hrnn.model.pooling import DownPool, PoolDecode, UpPool

START_TOKEN = 0


class LevelState(NamedTuple):
  """Step state of a U-Net level. The innermost level has only `down`; a pooled level (pool p) has all five."""

  down: StackState  # the down (or innermost) stack's
  pool: Frame | None = None  # [B, d], the down-pool's partial sum of the open window
  inner: LevelState | None = None  # the inner level's
  unpool: jax.Array | None = None  # [B, p, d], the up-pool's outputs of the last coarse step
  up: StackState | None = None  # the up stack's


@flax.struct.dataclass
class LevelDecode:
  """The step form's arrays of a level (`Level.decode_params`), fields as in `LevelState`."""

  down: tuple[BlockDecode, ...]
  pool: PoolDecode | None = None
  inner: LevelDecode | None = None
  unpool: PoolDecode | None = None
  up: tuple[BlockDecode, ...] | None = None


class Level(nnx.Module):
  """One U-Net level: a down stack, optionally the pooled inner level, an up stack. State: `LevelState`."""

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

  # ---- parallel form ----

  def __call__(self, x: Activations, *, length: int | None = None,
               seq_axis: str | None = None) -> tuple[Activations, LevelState]:
    """x [B, T, d] (T a multiple of the pool factors below) -> (y [B, T, d], the state after the first `length`
    steps; None: all T). Steps from `length` on are padding that leaves the state unchanged."""
    x, down = self.down_stack(x, length=length, seq_axis=seq_axis)
    if self.inner is None:
      return x, LevelState(down)
    coarse_length = None if length is None else -(-length // self.down_pool.p)  # coarse steps taken by then
    coarse, pool = self.down_pool(x, length=length, seq_axis=seq_axis)
    inner_out, inner = self.inner(coarse, length=coarse_length, seq_axis=seq_axis)
    pooled, unpool = self.up_pool(inner_out, length=coarse_length)
    x, up = self.up_stack(x + pooled, length=length, seq_axis=seq_axis)
    return x, LevelState(down, pool, inner, unpool, up)

  # ---- step form ----

  def decode_params(self) -> LevelDecode:
    if self.inner is None:
      return LevelDecode(self.down_stack.decode_params())
    return LevelDecode(self.down_stack.decode_params(), self.down_pool.decode_params(), self.inner.decode_params(),
                       self.up_pool.decode_params(), self.up_stack.decode_params())

  @staticmethod
  def init_state(params: LevelDecode, batch: int) -> LevelState:
    down = TemporalStack.init_state(params.down, batch)
    if params.inner is None:
      return LevelState(down)
    return LevelState(down, DownPool.init_state(params.pool, batch), Level.init_state(params.inner, batch),
                      UpPool.init_state(params.unpool, batch), TemporalStack.init_state(params.up, batch))

  @staticmethod
  def step(params: LevelDecode, state: LevelState, x: Frame, offset: jax.Array, *,
           depth: int) -> tuple[LevelState, Frame]:
    """One time step, x_t [B, d] -> (state, y_t [B, d]).

    At fine step t = kp of a pooled level the down-pool window (frames kp-p+1 .. kp) is complete: the inner level
    steps once on c_k and its output gives the p fine up-pool outputs for steps kp .. kp+p-1, kept in the state.
    `depth` (static) says how many levels below this one step now: 0 means the inner level does not, and `offset`
    (traced, 1..p-1) is then t - kp for the first level that does not step (unused when that is the innermost).
    """
    down, x = TemporalStack.step(params.down, state.down, x)
    if params.inner is None:
      return LevelState(down), x
    if depth == 0:
      pool = DownPool.accumulate(params.pool, state.pool, x, offset)
      inner, unpool = state.inner, state.unpool
      pooled = unpool[:, offset]
    else:
      pool, coarse = DownPool.close(params.pool, state.pool, x)
      inner, inner_out = Level.step(params.inner, state.inner, coarse, offset, depth=depth - 1)
      unpool = UpPool.step(params.unpool, inner_out)
      pooled = unpool[:, 0]
    up, x = TemporalStack.step(params.up, state.up, x + pooled)
    return LevelState(down, pool, inner, unpool, up), x


class State(NamedTuple):
  """Step state of the whole model."""

  pos: jax.Array  # int32 [], the number of tokens taken (the position of the next prediction)
  net: LevelState


@flax.struct.dataclass
class ModelDecode:
  """The step form's arrays of the whole model (`HarmonicRNN.decode_params`): a pytree, so it passes through jit."""

  embed: jax.Array  # [K, d], `Embedding.decode_params`
  net: LevelDecode
  head_w: jax.Array  # [d, K], the head with the final LayerNorm's scale folded in, diag(s) W
  head_b: jax.Array  # [K], beta W + c
  epsilon: float = flax.struct.field(pytree_node=False)  # the final LayerNorm's

  @property
  def pool_factors(self) -> tuple[int, ...]:
    """The pool factors, outer -> inner."""
    factors, level = [], self.net
    while level.inner is not None:
      factors.append(level.unpool.w.shape[0])
      level = level.inner
    return tuple(factors)


class HarmonicRNN(nnx.Module):
  """Autoregressive model over 8-bit tokens: int [B, T] -> logits [B, T, num_classes] (position t predicts x_t).

  State (step form): `State`, the position and every level's `LevelState`.
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed = Embedding(cfg.embedding, cfg.width, cfg.num_classes, cfg.embedding_dropout, rngs=rngs)
    self.net = Level(cfg, 0, rngs=rngs)
    self.final_norm = nnx.LayerNorm(cfg.width, rngs=rngs)
    self.head = nnx.Linear(cfg.width, cfg.num_classes, rngs=rngs)

  # ---- parallel form ----

  def _forward(self, tokens: Tokens, seq_axis: str | None, exact_state: bool) -> tuple[Logits, State]:
    length = tokens.shape[1]
    inputs = shift_right(tokens, seq_axis)
    if seq_axis is None:
      inputs = pad_to_multiple(inputs, self.cfg.total_pool)
    elif length % self.cfg.total_pool:
      raise ValueError(f"sharded forward needs a local length that is a multiple of {self.cfg.total_pool}, "
                       f"got {length}; pad the sequence with hrnn.train.sharding.pad_for_mesh first")
    # Masking the padding out of the states costs a select per CG-LRU step: only prefill asks for it.
    x, net = self.net(self.embed(inputs), length=length if exact_state else None, seq_axis=seq_axis)
    return self.head(self.final_norm(x))[:, :length], State(jnp.asarray(length, jnp.int32), net)

  def __call__(self, tokens: Tokens, *, seq_axis: str | None = None) -> Logits:
    """tokens: int [B, T]. With `seq_axis` (inside shard_map, time sharded), T is the local shard length, must
    be a multiple of `cfg.total_pool`, and the input shift takes the previous shard's last token."""
    return self._forward(tokens, seq_axis, exact_state=False)[0]

  def prefill(self, tokens: Tokens) -> tuple[Logits, State]:
    """The parallel forward of tokens [B, T] that also returns the step state after it.

    Returns (logits [B, T, num_classes] equal to `self(tokens)`, state): the state has consumed the inputs
    START, x_0 .. x_{T-2}; the next `step` takes x_{T-1} and predicts x_T.
    """
    return self._forward(tokens, None, exact_state=True)

  # ---- step form ----

  def decode_params(self) -> ModelDecode:
    """The step form's arrays: the embedding table, the levels' fused arrays, the head with the final LayerNorm's
    scale and bias folded in (as in `hrnn.model.blocks.BlockDecode`)."""
    w, b = self.head.kernel[...], self.head.bias[...]
    return ModelDecode(embed=self.embed.decode_params(), net=self.net.decode_params(),
                       head_w=self.final_norm.scale[...][:, None] * w, head_b=self.final_norm.bias[...] @ w + b,
                       epsilon=self.final_norm.epsilon)

  @staticmethod
  def init_state(params: ModelDecode, batch: int) -> State:
    """The state before the first token: position 0, every recurrence and pooling buffer zero."""
    return State(jnp.zeros((), jnp.int32), Level.init_state(params.net, batch))

  @staticmethod
  def step(params: ModelDecode, state: State, token: Token, offset: jax.Array, *,
           depth: int) -> tuple[State, StepLogits]:
    """One token at a static `depth` with a traced `offset` (`Level.step`, `step_depth`): the previous token
    x_{t-1} [B] (START_TOKEN at t = 0) -> (state, logits [B, num_classes] for x_t)."""
    net, x = Level.step(params.net, state.net, Embedding.step(params.embed, token), offset, depth=depth)
    logits = standardize(x, params.epsilon) @ params.head_w + params.head_b
    return State(state.pos + 1, net), logits


def step_depth(factors: tuple[int, ...], pos: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(depth, offset) of time step `pos`: depth = the number of pooled levels whose inner level steps at `pos`
  (pos is a multiple of their inner rate), offset = pos's place in the pooling window of the next level."""
  rates = [1]
  for p in factors:
    rates.append(rates[-1] * p)
  depth = sum((pos % r == 0).astype(jnp.int32) for r in rates[1:]) if factors else jnp.zeros((), jnp.int32)
  rate = jnp.asarray(rates)[depth]
  window = jnp.asarray(factors + (1,))[depth]
  return depth, (pos // rate) % window


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


def log_likelihoods(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """log p(x_t | x_<t) in nats of every token: logits [B, T, K], tokens int [B, T] -> float32 [B, T].

  The one likelihood function: `nll_bits` sums it over real tokens, `hrnn.paper.experiments` over each sample.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]


def nll_bits(logits: jax.Array, tokens: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Summed negative log-likelihood in bits and the number of real tokens.

  logits [B, T, K], tokens int [B, T], mask [B, T] (1 = real token, 0 = padding) or None for all real.
  Returns (sum of -log2 p(x_t | x_<t) over real tokens, count); their ratio is bits per sample.
  """
  nats = -log_likelihoods(logits, tokens)
  mask = jnp.ones_like(nats) if mask is None else mask.astype(jnp.float32)
  return jnp.sum(nats * mask) / jnp.log(2.0), jnp.sum(mask)


def loss_bits(model: HarmonicRNN, tokens: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Mean NLL in bits per real sample: the training objective."""
  total, count = nll_bits(model(tokens), tokens, mask)
  return total / jnp.maximum(count, 1.0)


def count_params(module: nnx.Module) -> int:
  """Number of scalar parameters (nnx.Param leaves) of a module."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
