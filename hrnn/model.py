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

Step mode (generation, `hrnn.sampling`): `HarmonicRNN.step_params()` gives fused plain arrays, `init_state` /
`step` / `token_step` advance one token, `HarmonicRNN.prefill` runs the parallel forward and returns the state.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from hrnn.blocks import TemporalStack, init_stack_state, normalize, stack_step
from hrnn.config import ModelConfig
from hrnn.embedding import Embedding
from hrnn.pooling import (DownPool, UpPool, down_pool_accumulate, down_pool_close, init_down_state, init_up_state,
                          up_pool_step)

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

  def step_params(self) -> dict:
    """Plain arrays for `level_step`: the stacks', the pools' and the inner level's, nested."""
    params = {"down": self.down_stack.step_params()}
    if self.inner is not None:
      params.update(pool=self.down_pool.step_params(), inner=self.inner.step_params(),
                    unpool=self.up_pool.step_params(), up=self.up_stack.step_params())
    return params

  def prefill(self, x: jax.Array, length: int) -> tuple[jax.Array, dict]:
    """Parallel forward of x [B, T, d] (T a multiple of the pool factors below) that also returns the step state
    after the first `length` steps of this level."""
    x, down = self.down_stack.prefill(x, length)
    if self.inner is None:
      return x, {"down": down}
    coarse_length = -(-length // self.down_pool.p)  # coarse steps taken during the first `length` fine steps
    coarse, pool = self.down_pool.prefill(x, length)
    inner_out, inner = self.inner.prefill(coarse, coarse_length)
    pooled, unpool = self.up_pool.prefill(inner_out, coarse_length)
    x, up = self.up_stack.prefill(x + pooled, length)
    return x, {"down": down, "pool": pool, "inner": inner, "unpool": unpool, "up": up}


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

  def step_params(self) -> dict:
    """Plain arrays for the step mode (`init_state`, `step`): a [num_classes, d] embedding table (every embedding
    kind is a function of the token alone; dropout is off at inference), the levels' fused parameters, and the
    head with the final LayerNorm's scale and bias folded in."""
    embed = nnx.clone(self.embed)
    embed.eval()
    w, b = self.head.kernel[...], self.head.bias[...]
    return {
        "embed": embed(jnp.arange(self.cfg.num_classes)[None])[0],
        "net": self.net.step_params(),
        "head_w": self.final_norm.scale[...][:, None] * w,
        "head_b": self.final_norm.bias[...] @ w + b,
        "epsilon": jnp.float32(self.final_norm.epsilon),
    }

  def prefill(self, tokens: jax.Array) -> tuple[jax.Array, dict]:
    """The parallel forward of tokens [B, T] that also returns the step state after it.

    Returns (logits [B, T, num_classes] equal to `self(tokens)`, state): the state has consumed the inputs
    START, x_0 .. x_{T-2}; the next `step` takes x_{T-1} and predicts x_T.
    """
    length = tokens.shape[1]
    inputs = pad_to_multiple(shift_right(tokens), self.cfg.total_pool)
    x, net = self.net.prefill(self.embed(inputs), length)
    logits = self.head(self.final_norm(x))[:, :length]
    return logits, {"pos": jnp.asarray(length, jnp.int32), "net": net}


def init_level_state(params: dict, batch: int) -> dict:
  """Zero step state of a level (`Level.step_params` structure)."""
  state = {"down": init_stack_state(params["down"], batch)}
  if "inner" in params:
    state.update(pool=init_down_state(params["pool"], batch), inner=init_level_state(params["inner"], batch),
                 unpool=init_up_state(params["unpool"], batch), up=init_stack_state(params["up"], batch))
  return state


def level_step(params: dict, state: dict, x: jax.Array, offset: jax.Array, *, depth: int) -> tuple[dict, jax.Array]:
  """One step of a level, x [B, d] -> (state, y [B, d]).

  At fine step t = kp of a pooled level the down-pool window (frames kp-p+1 .. kp) is complete: the inner level
  steps once on c_k and its output gives the p fine up-pool outputs for steps kp .. kp+p-1, kept in the state.
  `depth` (static) says how many levels below this one step now: 0 means the inner level does not, and `offset`
  (traced, 1..p-1) is then t - kp for the first level that does not step (unused when that is the innermost).
  """
  state = dict(state)
  state["down"], x = stack_step(params["down"], state["down"], x)
  if "inner" not in params:
    return state, x
  if depth == 0:
    state["pool"] = down_pool_accumulate(params["pool"], state["pool"], x, offset)
    pooled = state["unpool"][:, offset]
  else:
    coarse = down_pool_close(params["pool"], state["pool"], x)
    state["pool"] = jnp.zeros_like(coarse)
    state["inner"], inner_out = level_step(params["inner"], state["inner"], coarse, offset, depth=depth - 1)
    state["unpool"] = up_pool_step(params["unpool"], inner_out)
    pooled = state["unpool"][:, 0]
  state["up"], x = stack_step(params["up"], state["up"], x + pooled)
  return state, x


def step_pool_factors(params: dict) -> tuple[int, ...]:
  """The pool factors (outer -> inner) of a model's step parameters."""
  factors, level = [], params["net"]
  while "inner" in level:
    factors.append(level["unpool"]["w"].shape[0])
    level = level["inner"]
  return tuple(factors)


def init_state(params: dict, batch: int) -> dict:
  """The step state before the first token: position 0, every recurrence and pooling buffer zero."""
  return {"pos": jnp.zeros((), jnp.int32), "net": init_level_state(params["net"], batch)}


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


def token_step(params: dict, state: dict, token: jax.Array, offset: jax.Array, *,
               depth: int) -> tuple[dict, jax.Array]:
  """One step of the whole model at a static `depth` with a traced `offset` (see `level_step`, `step_depth`).

  token: int [B], the previous token x_{t-1} (START_TOKEN at t = 0) -> (state, logits [B, num_classes] for x_t).
  """
  net, x = level_step(params["net"], state["net"], params["embed"][token], offset, depth=depth)
  logits = normalize(x, params["epsilon"]) @ params["head_w"] + params["head_b"]
  return {"pos": state["pos"] + 1, "net": net}, logits


def step(params: dict, state: dict, token: jax.Array) -> tuple[dict, jax.Array]:
  """One step of the whole model at any position: `token_step` with the depth chosen by a `lax.switch`.

  For long generation the nested scans of `hrnn.sampling` avoid this per-token branch.
  """
  factors = step_pool_factors(params)
  depth, offset = step_depth(factors, state["pos"])
  branches = [functools.partial(token_step, depth=m) for m in range(len(factors) + 1)]
  return jax.lax.switch(depth, branches, params, state, token, offset)


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

  The one likelihood function: `nll_bits` sums it over real tokens, `hrnn.experiments` over each sample.
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
