"""Initialisers shared by the layers (each layer's own initialisation lives beside it: the CG-LRU's decays and
phases in hrnn.model.lru)."""

from __future__ import annotations

import jax


def scaled_init(num_blocks: int) -> jax.nn.initializers.Initializer:
  """Variance-scaling (fan-in, normal) initialiser at scale 1 / num_blocks: the output layer of each residual
  branch, so that the residual stream of a level with `num_blocks` branches keeps unit scale at init."""
  return jax.nn.initializers.variance_scaling(1.0 / num_blocks, "fan_in", "normal")
