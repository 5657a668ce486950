"""Shape legend: the axis letters of hrnn's docstrings and annotations, and named array types that carry them.

  B    batch: sequences, or streams being sampled
  T    time steps at the rate of the level at hand (a pooled level of pool p has T / p steps)
  d    feature width, `ModelConfig.width` (128 in the paper)
  n_h  CG-LRU width, `ModelConfig.lru_width` (256); n_c = n_h / 2 complex channels
  G    blocks of a block-diagonal map (`gate_blocks`), or groups of a pooling convolution
  p    pool factor of a level; R = prod p, the total pool factor (160 in the paper)
  K    token classes (256)
  n    temporal blocks in a stack

The aliases are `jax.Array` at run time (nothing is checked); the `Annotated` text names dtype and shape, so that a
signature such as `def __call__(self, x: Activations) -> tuple[Activations, RNNState]` reads as its shapes.
The step form of a layer works on one time step, its arrays written without T ([B, d] instead of [B, T, d]).
"""

from __future__ import annotations

from typing import Annotated

import jax

Tokens = Annotated[jax.Array, "int [B, T], values 0..K-1"]
Token = Annotated[jax.Array, "int32 [B], one token per stream"]
Activations = Annotated[jax.Array, "float32 [B, T, d]"]
Frame = Annotated[jax.Array, "float32 [B, d], one time step of Activations"]
Projection = Annotated[jax.Array, "float32 [..., n_h], u = W_u x + c_u: [Re z, Im z]"]
Coefficient = Annotated[jax.Array, "complex64 [..., n_c], a recurrence coefficient a_t or b_t"]
RNNState = Annotated[jax.Array, "complex64 [B, n_c], a CG-LRU state h_t"]
Valid = Annotated[jax.Array, "float32 [T], 1 at real steps, 0 at padding"]
Logits = Annotated[jax.Array, "float32 [B, T, K]"]
StepLogits = Annotated[jax.Array, "float32 [B, K]"]
