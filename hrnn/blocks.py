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

from hrnn import lru
from hrnn.config import ModelConfig
from hrnn.lru import CGLRU


def scaled_init(num_blocks: int):
  """Variance-scaling (fan-in, normal) initialiser at scale 1 / num_blocks."""
  return jax.nn.initializers.variance_scaling(1.0 / num_blocks, "fan_in", "normal")


def compiler_options(cfg: ModelConfig) -> dict[str, str]:
  """XLA options for `jax.jit(..., compiler_options=...)` of a gradient of this model.

  Rematerialisation (`cfg.remat`) keeps recomputed values apart from the forward pass's with optimization
  barriers; XLA on CPU expands those barriers away (its cse_barrier_expander pass) and then merges the two, which
  silently undoes remat (measured: no memory saved). Keeping the barriers restores it.
  """
  return {"xla_disable_hlo_passes": "cse_barrier_expander"} if cfg.remat != "none" else {}


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

  def branch(self, x: jax.Array, mixed: jax.Array) -> jax.Array:
    """The residual branch given x and layer(LN(x)) (shared by the parallel and the step-wise forward)."""
    return self.dropout(self.out(mixed * jax.nn.gelu(self.gate(self.norm(x)))))

  def _mix(self, y: jax.Array, seq_axis: str | None) -> jax.Array:
    """layer(LN(x)); with remat "recurrence" the CG-LRU is recomputed in the backward pass, not stored."""
    if self.kind == "mlp":
      return self.layer(y)
    if self.remat == "recurrence":
      return nnx.remat(lambda layer, y: layer(y, seq_axis=seq_axis))(self.layer, y)
    return self.layer(y, seq_axis=seq_axis)

  def _forward(self, x: jax.Array, seq_axis: str | None) -> jax.Array:
    return x + self.branch(x, self._mix(self.norm(x), seq_axis))

  def __call__(self, x: jax.Array, *, seq_axis: str | None = None) -> jax.Array:
    if self.remat in ("block", "stack"):  # "stack": recomputed blocks inside a recomputed stack
      return nnx.remat(lambda block, x: block._forward(x, seq_axis))(self, x)
    return self._forward(x, seq_axis)

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
  """`n` temporal blocks: (recurrent, MLP) residual pairs applied in order."""

  def __init__(self, cfg: ModelConfig, n: int, num_blocks: int, *, rngs: nnx.Rngs):
    self.remat = cfg.remat
    self.blocks = nnx.List([ResidualBlock(cfg, kind, num_blocks, rngs=rngs)
                            for _ in range(n) for kind in ("recurrent", "mlp")])

  def _forward(self, x: jax.Array, seq_axis: str | None) -> jax.Array:
    for block in self.blocks:
      x = block(x, seq_axis=seq_axis)
    return x

  def __call__(self, x: jax.Array, *, seq_axis: str | None = None) -> jax.Array:
    if self.remat == "stack" and len(self.blocks):  # the backward pass stores only the stack's input
      return nnx.remat(lambda stack, x: stack._forward(x, seq_axis))(self, x)
    return self._forward(x, seq_axis)

  def step_params(self) -> list[dict]:
    return [block.step_params() for block in self.blocks]

  def prefill(self, x: jax.Array, length: int) -> tuple[jax.Array, list]:
    """Parallel forward that also returns the step states of the blocks after the first `length` steps."""
    states = []
    for block in self.blocks:
      x, state = block.prefill(x, length)
      states.append(state)
    return x, states


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
