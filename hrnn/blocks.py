"""Residual blocks: the temporal block of Fig. 1a is one recurrent block followed by one MLP block.

  y = x + Dropout( W_o ( layer(LN(x)) * gelu(W_g LN(x)) ) )

`layer` is the CG-LRU (output width d) for a recurrent block and a Dense d -> 2d for an MLP block (no activation
inside: the gelu gate supplies it). W_o is initialised with variance scaling at scale 1 / num_blocks of the level
so that the residual stream keeps unit scale at init.
"""

from __future__ import annotations

import jax
from flax import nnx

from hrnn.config import ModelConfig
from hrnn.lru import CGLRU


def scaled_init(num_blocks: int):
  """Variance-scaling (fan-in, normal) initialiser at scale 1 / num_blocks."""
  return jax.nn.initializers.variance_scaling(1.0 / num_blocks, "fan_in", "normal")


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
