"""Input embeddings of 8-bit tokens (paper section 4.3, Fig. 2).

- sinusoidal (the paper's choice, not learned): f_k = exp(-ln(10000) k / (d/2)), k = 0..d/2-1,
  e(x) = [cos(x f), sin(x f)] applied to the raw integer x in 0..255.
- linear: x scaled to [-1, 1], then a Dense layer 1 -> d.
- learned: a 256 x d table.
- learned-dropout: the same table followed by dropout.

Every kind is a function of the token alone, so the step form is a [K, d] table of the parallel form's outputs
(dropout off: inference), looked up one token at a time.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from hrnn.model.array_typing import Activations, Frame, Token, Tokens


def sinusoidal_embedding(tokens: jax.Array, width: int) -> jax.Array:
  """[...] int tokens -> [..., width] float32 features."""
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(width // 2) / (width // 2))
  angles = tokens.astype(jnp.float32)[..., None] * freqs
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class Embedding(nnx.Module):
  """Maps int tokens [B, T] to features [B, T, width] by the configured method."""

  def __init__(self, kind: str, width: int, num_classes: int, dropout: float, *, rngs: nnx.Rngs):
    self.kind = kind
    self.width = width
    self.num_classes = num_classes
    self.linear = nnx.Linear(1, width, rngs=rngs) if kind == "linear" else None
    self.table = nnx.Embed(num_classes, width, rngs=rngs) if kind.startswith("learned") else None
    self.dropout = nnx.Dropout(dropout, rngs=rngs) if kind == "learned-dropout" else None

  def __call__(self, tokens: Tokens) -> Activations:
    if self.kind == "sinusoidal":
      return sinusoidal_embedding(tokens, self.width)
    if self.kind == "linear":
      scaled = tokens.astype(jnp.float32) / (self.num_classes - 1) * 2.0 - 1.0
      return self.linear(scaled[..., None])
    x = self.table(tokens)
    return x if self.dropout is None else self.dropout(x)

  def decode_params(self) -> jax.Array:
    """The step form's table [K, d]: row k is the parallel form's embedding of token k, without dropout."""
    embed = nnx.clone(self)
    embed.eval()
    return embed(jnp.arange(self.num_classes)[None])[0]

  @staticmethod
  def step(table: jax.Array, token: Token) -> Frame:
    """Embeddings [B, d] of tokens [B]."""
    return table[token]
