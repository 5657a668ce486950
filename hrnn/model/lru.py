"""The complex gated linear recurrent unit (CG-LRU); docs/model.md "CG-LRU" has the initialisation and parameters.

For an input x_t in R^d:

  u_t   = W_u x_t + c_u                                     in R^{n_h}
  g^x_t = sigmoid(BD_x(u_t)),  g^a_t = sigmoid(BD_a(u_t))    in R^{n_c}, n_c = n_h / 2
  log a_t = -8 g^a_t softplus(Lambda) + i g^a_t theta        (the phase is not multiplied by 8)
  z_t   = u_t[:n_c] + i u_t[n_c:]
  b_t   = sqrt(1 - |a_t|^2) (g^x_t z_t)
  h_t   = a_t h_{t-1} + b_t,   h_{-1} = 0                    (complex64, `hrnn.ops.scan.linear_recurrence`)
  y_t   = W_y [Re h_t, Im h_t] + c_y                         in R^d

`CGLRU` computes it in two forms that share `recurrence_coefficients`: the parallel form over a sequence
(`__call__`, which also returns the last state) and the step form (`step`, one time step from the state h_{t-1},
on the fused arrays of `decode_params`). Shapes follow `hrnn.model.array_typing`.
"""

from __future__ import annotations

import functools
import math

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from hrnn.ops import scan
from hrnn.model.array_typing import Activations, Coefficient, Frame, Projection, RNNState, Valid

# -8 in log a: with the gate fully open the per-step decay is r^8 (Griffin's constant c = 8).
_DECAY_SCALE = 8.0
# Largest derivative allowed through sqrt(1 - |a|^2), which is unbounded as |a| -> 1.
_SQRT_MAX_GRAD = 200.0


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def sqrt_bounded_derivative(x: jax.Array, max_gradient: float = _SQRT_MAX_GRAD) -> jax.Array:
  """sqrt(x) whose derivative 1 / (2 sqrt(x)) is clipped at `max_gradient` (finite even at x = 0)."""
  return jnp.sqrt(x)


@sqrt_bounded_derivative.defjvp
def _sqrt_bounded_jvp(max_gradient, primals, tangents):
  (x,), (dx,) = primals, tangents
  # 1 / (2 sqrt(x)) <= max_gradient  <=>  x >= 1 / (2 max_gradient)^2
  floor = 1.0 / (2.0 * max_gradient) ** 2
  return jnp.sqrt(x), dx / (2.0 * jnp.sqrt(jnp.maximum(x, floor)))


def recurrence_coefficients(u: Projection, gate_x: jax.Array, gate_a: jax.Array, log_decay: jax.Array,
                            theta: jax.Array) -> tuple[Coefficient, Coefficient]:
  """(a_t, b_t), complex64 [..., n_c], from u_t [..., n_h] and the gates' pre-activations BD_x(u_t), BD_a(u_t)
  [..., n_c]; log_decay = -8 softplus(Lambda) and theta are [n_c]. The one definition of the gate maths: both forms
  of `CGLRU` call it."""
  n_c = theta.shape[-1]
  g_x, g_a = jax.nn.sigmoid(gate_x), jax.nn.sigmoid(gate_a)
  log_abs_a = g_a * log_decay
  # Real arithmetic, complex only at the end: a = |a| (cos phase + i sin phase), b = scale (g_x Re z + i g_x Im z).
  # The same values as exp(log|a|) exp(i phase) and scale (g_x z) with real factors promoted to complex, but XLA
  # expands a complex exp with inf/zero guards (3 compares/selects and 2 extra exps) and every real-times-complex
  # product into 4 multiplies: a third more elementwise work per CG-LRU step, which step-wise sampling feels.
  abs_a, phase = jnp.exp(log_abs_a), g_a * theta
  a = jax.lax.complex(abs_a * jnp.cos(phase), abs_a * jnp.sin(phase))
  scale = sqrt_bounded_derivative(1.0 - jnp.exp(2.0 * log_abs_a))
  b = jax.lax.complex(scale * (g_x * u[..., :n_c]), scale * (g_x * u[..., n_c:]))
  return a.astype(jnp.complex64), b.astype(jnp.complex64)


class BlockDiagonal(nnx.Module):
  """y = x W + c with W block diagonal: the input splits into `blocks` pieces, each mapped independently.

  Weights [blocks, in/blocks, out/blocks] are LeCun-normal with the fan-in of the *full* input width; biases
  [blocks, out/blocks] are LeCun-normal with fan-in `blocks` (the authors' initialisation).
  """

  def __init__(self, in_features: int, out_features: int, blocks: int, *, rngs: nnx.Rngs):
    self.blocks = blocks
    k_w, k_b = rngs.params(), rngs.params()
    shape = (blocks, in_features // blocks, out_features // blocks)
    self.w = nnx.Param(jax.random.normal(k_w, shape) / math.sqrt(in_features))
    self.b = nnx.Param(jax.random.normal(k_b, (blocks, out_features // blocks)) / math.sqrt(blocks))

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(*x.shape[:-1], self.blocks, -1)  # [..., blocks, in/blocks]
    y = jnp.einsum("...hi,hij->...hj", x, self.w[...]) + self.b[...]
    return y.reshape(*y.shape[:-2], -1)


def _init_lambda(key: jax.Array, n: int, r_min: float, r_max: float) -> jax.Array:
  """Lambda = softplus^{-1}(-log r) with r^2 ~ U[r_min^2, r_max^2], so exp(-softplus(Lambda)) = r."""
  r = jnp.sqrt(jax.random.uniform(key, (n,), minval=r_min**2, maxval=r_max**2))
  y = -jnp.log(r)
  return jnp.log(jnp.expm1(y))  # softplus^{-1}(y) = log(e^y - 1)


@flax.struct.dataclass
class CGLRUDecode:
  """The step form's arrays (`CGLRU.decode_params`). The input projection W_u is not here: the residual block
  fuses it with its own gate matmul (`hrnn.model.blocks.BlockDecode`)."""

  gates_w: jax.Array  # [G, n_h/G, 2 n_c/G]: per block, BD_x's outputs then BD_a's (the two gates share u)
  gates_b: jax.Array  # [G, 2 n_c/G]
  log_decay: jax.Array  # [n_c], -8 softplus(Lambda): log|a_t| = g^a_t log_decay
  theta: jax.Array  # [n_c]
  out_w: jax.Array  # [n_h, d], W_y
  out_b: jax.Array  # [d], c_y


class CGLRU(nnx.Module):
  """Complex gated linear recurrent unit, [B, T, d] -> [B, T, d] (equations in the module docstring).

  State: h_t, complex64 [B, n_c] (`RNNState`), zeros before the first step.
  """

  def __init__(self, width: int, lru_width: int, gate_blocks: int, *, r_min: float, r_max: float,
               max_phase: float, scan_backend: str | None, rngs: nnx.Rngs):
    n_c = lru_width // 2
    self.n_c = n_c
    self.scan_backend = scan_backend
    self.in_proj = nnx.Linear(width, lru_width, rngs=rngs)
    self.gate_x = BlockDiagonal(lru_width, n_c, gate_blocks, rngs=rngs)
    self.gate_a = BlockDiagonal(lru_width, n_c, gate_blocks, rngs=rngs)
    self.a_param = nnx.Param(_init_lambda(rngs.params(), n_c, r_min, r_max))  # Lambda
    self.theta = nnx.Param(jax.random.uniform(rngs.params(), (n_c,), minval=0.0, maxval=max_phase))
    self.out_proj = nnx.Linear(lru_width, width, rngs=rngs)

  def log_decay(self) -> jax.Array:
    """-8 softplus(Lambda) [n_c]: log|a_t| = g^a_t times it."""
    return -_DECAY_SCALE * jax.nn.softplus(self.a_param[...])

  # ---- parallel form (training, evaluation, prefill) ----

  def coefficients(self, x: Activations, valid: Valid | None = None) -> tuple[Coefficient, Coefficient]:
    """The recurrence coefficients (a, b), complex64 [..., T, n_c], for inputs x [..., T, d] (no time mixing).

    `valid` [T] (optional) marks padded steps with 0: there a = 1 and b = 0, so the state passes them unchanged.
    """
    u = self.in_proj(x)
    a, b = recurrence_coefficients(u, self.gate_x(u), self.gate_a(u), self.log_decay(), self.theta[...])
    if valid is None:
      return a, b
    keep = valid[:, None] > 0
    return jnp.where(keep, a, 1), jnp.where(keep, b, 0)

  def readout(self, h: RNNState) -> jax.Array:
    """y = W_y [Re h, Im h] + c_y for states h [..., n_c]."""
    return self.out_proj(jnp.concatenate([h.real, h.imag], axis=-1))

  def __call__(self, x: Activations, h0: RNNState | None = None, *, valid: Valid | None = None,
               seq_axis: str | None = None) -> tuple[Activations, RNNState]:
    """x [B, T, d] -> (y [B, T, d], the last state h_{T-1} [B, n_c] complex64), from the state h0 [B, n_c] before
    the first step (zeros when None); `valid` as in `coefficients` (the last state is then the state after the
    last real step). With `seq_axis` (time sharded), h0 enters the first shard and the last state is the local
    shard's."""
    a, b = self.coefficients(x, valid)  # [B, T, n_c]
    h, h_last = scan.linear_recurrence(a, b, h0, backend=self.scan_backend, seq_axis=seq_axis)
    return self.readout(h), h_last

  # ---- step form (generation: one time step from the previous state) ----

  def decode_params(self) -> CGLRUDecode:
    """The step form's arrays, with the two gate maps (which share u) fused into one block-diagonal map."""
    return CGLRUDecode(
        gates_w=jnp.concatenate([self.gate_x.w[...], self.gate_a.w[...]], axis=-1),
        gates_b=jnp.concatenate([self.gate_x.b[...], self.gate_a.b[...]], axis=-1),
        log_decay=self.log_decay(), theta=self.theta[...],
        out_w=self.out_proj.kernel[...], out_b=self.out_proj.bias[...])

  @staticmethod
  def init_state(params: CGLRUDecode, batch: int) -> RNNState:
    """h_{-1} = 0, complex64 [batch, n_c]."""
    return jnp.zeros((batch, params.theta.shape[0]), jnp.complex64)

  @staticmethod
  def step(params: CGLRUDecode, h: RNNState, u: Frame) -> tuple[RNNState, Frame]:
    """One time step: (h_{t-1} [B, n_c], u_t = W_u x_t + c_u [B, n_h]) -> (h_t, y_t [B, d])."""
    blocks, block_in, block_out = params.gates_w.shape
    gates = jnp.einsum("bgi,gio->bgo", u.reshape(-1, blocks, block_in), params.gates_w) + params.gates_b
    gate_x = gates[..., :block_out // 2].reshape(u.shape[0], -1)
    gate_a = gates[..., block_out // 2:].reshape(u.shape[0], -1)
    a, b = recurrence_coefficients(u, gate_x, gate_a, params.log_decay, params.theta)
    # h_t = a_t h_{t-1} + b_t written out in real and imaginary parts: XLA's CPU code for a complex64 multiply on
    # the interleaved state made whole-model sampling ~20% slower (26,900 against 34,700 tokens per CPU second at
    # the cpu preset, batch 32); the real parts of a and b are read straight from `lax.complex`'s operands.
    h_re = a.real * h.real - a.imag * h.imag + b.real
    h_im = a.real * h.imag + a.imag * h.real + b.imag
    return jax.lax.complex(h_re, h_im), jnp.concatenate([h_re, h_im], axis=-1) @ params.out_w + params.out_b
