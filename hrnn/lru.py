"""The complex gated linear recurrent unit (CG-LRU), reference.md section 1.

For an input x_t in R^d:

  u_t   = W_u x_t + c_u                                     in R^{n_h}
  g^x_t = sigmoid(BD_x(u_t)),  g^a_t = sigmoid(BD_a(u_t))    in R^{n_c}, n_c = n_h / 2
  log a_t = -8 g^a_t softplus(Lambda) + i g^a_t theta        (the phase is not multiplied by 8)
  z_t   = u_t[:n_c] + i u_t[n_c:]
  b_t   = sqrt(1 - |a_t|^2) (g^x_t z_t)
  h_t   = a_t h_{t-1} + b_t,   h_{-1} = 0                    (complex64, `hrnn.scan.linear_recurrence`)
  y_t   = W_y [Re h_t, Im h_t] + c_y                         in R^d
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from hrnn import scan

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


class CGLRU(nnx.Module):
  """Complex gated linear recurrent unit mapping [B, T, d] -> [B, T, d] (equations in the module docstring)."""

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

  def coefficients(self, x: jax.Array, valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """The recurrence coefficients (a, b), complex64 [..., T, n_c], for inputs x [..., T, d] (no time mixing).

    `valid` [T] (optional) marks padded steps with 0: there a = 1 and b = 0, so the state passes them unchanged.
    """
    u = self.in_proj(x)
    g_x = jax.nn.sigmoid(self.gate_x(u))
    g_a = jax.nn.sigmoid(self.gate_a(u))
    log_abs_a = -_DECAY_SCALE * g_a * jax.nn.softplus(self.a_param[...])
    a = jnp.exp(log_abs_a) * jnp.exp(1j * g_a * self.theta[...])  # exp(log|a| + i phase), complex64
    z = jax.lax.complex(u[..., :self.n_c], u[..., self.n_c:])
    b = sqrt_bounded_derivative(1.0 - jnp.exp(2.0 * log_abs_a)) * (g_x * z)
    a, b = a.astype(jnp.complex64), b.astype(jnp.complex64)
    if valid is None:
      return a, b
    keep = valid[:, None] > 0
    return jnp.where(keep, a, 1), jnp.where(keep, b, 0)

  def readout(self, h: jax.Array) -> jax.Array:
    """y = W_y [Re h, Im h] + c_y for states h [..., n_c]."""
    return self.out_proj(jnp.concatenate([h.real, h.imag], axis=-1))

  def __call__(self, x: jax.Array, h0: jax.Array | None = None, *, valid: jax.Array | None = None,
               seq_axis: str | None = None) -> tuple[jax.Array, jax.Array]:
    """x [B, T, d] -> (y [B, T, d], the last state h_{T-1} [B, n_c] complex64), from the state h0 [B, n_c] before
    the first step (zeros when None); `valid` as in `coefficients`. With `seq_axis` (time sharded), h0 enters the
    first shard and the last state is the local shard's."""
    a, b = self.coefficients(x, valid)  # [B, T, n_c]
    h, h_last = scan.linear_recurrence(a, b, h0, backend=self.scan_backend, seq_axis=seq_axis)
    return self.readout(h), h_last

  # ---- step mode (one time step at a time, for generation) ----

  def step_params(self) -> dict[str, jax.Array]:
    """Plain arrays for `step`, with the two gate projections (which share u) fused into one block-diagonal map.

    The input projection u = W_u x + c_u is not included: the residual block fuses it with its own gate matmul.
    """
    return {
        "gates_w": jnp.concatenate([self.gate_x.w[...], self.gate_a.w[...]], axis=-1),  # [G, n_h/G, 2 n_c/G]
        "gates_b": jnp.concatenate([self.gate_x.b[...], self.gate_a.b[...]], axis=-1),  # [G, 2 n_c/G]
        "log_decay": -_DECAY_SCALE * jax.nn.softplus(self.a_param[...]),  # log|a| = g_a * log_decay
        "theta": self.theta[...],
        "out_w": self.out_proj.kernel[...],
        "out_b": self.out_proj.bias[...],
    }

  def prefill(self, x: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """Parallel forward of x [B, T, d] that also returns the step state after the first `length` steps."""
    a, b = self.coefficients(x)
    h, _ = scan.linear_recurrence(a, b, backend=self.scan_backend)
    last = h[:, length - 1]
    return self.readout(h), jnp.concatenate([last.real, last.imag], axis=-1)


def init_state(params: dict[str, jax.Array], batch: int) -> jax.Array:
  """The zero state h_{-1} = 0 as a real array [batch, n_h] holding [Re h, Im h]."""
  return jnp.zeros((batch, 2 * params["theta"].shape[0]), jnp.float32)


def step(params: dict[str, jax.Array], h: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One CG-LRU time step in real arithmetic (the module docstring's equations with h = [Re h, Im h]).

  Args:
    params: `CGLRU.step_params()`.
    h: [B, n_h] previous state [Re h_{t-1}, Im h_{t-1}].
    u: [B, n_h] input projection u_t = W_u x_t + c_u; its halves are [Re z_t, Im z_t].

  Returns:
    (h_t, y_t): the new state [B, n_h] and the readout W_y [Re h_t, Im h_t] + c_y [B, d].
  """
  n_c = u.shape[-1] // 2
  w = params["gates_w"]
  blocks, block_in, block_out = w.shape
  gates = jnp.einsum("bgi,gio->bgo", u.reshape(-1, blocks, block_in), w) + params["gates_b"]  # [B, G, 2 n_c/G]
  gates = jax.nn.sigmoid(gates)
  g_x = gates[..., :block_out // 2].reshape(-1, n_c)
  g_a = gates[..., block_out // 2:].reshape(-1, n_c)
  log_abs_a = g_a * params["log_decay"]
  abs_a = jnp.exp(log_abs_a)
  phase = g_a * params["theta"]
  a_re, a_im = abs_a * jnp.cos(phase), abs_a * jnp.sin(phase)
  scale = jnp.sqrt(1.0 - jnp.exp(2.0 * log_abs_a)) * g_x  # b_t = scale * z_t
  h_re, h_im = h[:, :n_c], h[:, n_c:]
  h = jnp.concatenate([a_re * h_re - a_im * h_im + scale * u[:, :n_c],
                       a_re * h_im + a_im * h_re + scale * u[:, n_c:]], axis=-1)
  return h, h @ params["out_w"] + params["out_b"]
