"""hrnn.model.blocks: the step forms equal the parallel forms; temporal stacks scanned over their pairs, time-chunked
recomputation (remat_chunk)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hrnn.model.blocks import ResidualBlock, TemporalStack, from_time_chunks, time_chunks
from hrnn.train.loop import compiler_options
from hrnn.config import ConfigError, get_preset
from hrnn.model.harmonic_rnn import HarmonicRNN, loss_bits

SMALL = dataclasses.replace(get_preset("smoke"), width=16, lru_width=32, gate_blocks=4)


def relative(x, ref):
  return float(jnp.linalg.norm(jnp.ravel(x - ref)) / jnp.linalg.norm(jnp.ravel(ref)))


def counts(module):
  """Every dropout stream's draw count (stacked blocks' streams one by one)."""
  return [int(c) for leaf in jax.tree.leaves(nnx.state(module, nnx.RngCount)) for c in np.ravel(leaf)]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_stack_scan_equals_blocks_in_order(dropout):
  # One lax.scan over the stacked (recurrent, MLP) pairs computes what the blocks do one after another (each a
  # slice of the stacked arrays), dropout masks included, and advances each block's dropout stream once.
  cfg = dataclasses.replace(SMALL, dropout=dropout)
  x = jax.random.normal(jax.random.key(0), (2, 50, 16))
  stack = TemporalStack(cfg, 3, 7, rngs=nnx.Rngs(1))
  assert nnx.state(stack.recurrent, nnx.Param)["layer"]["theta"].shape == (3, 16)  # n blocks stacked
  before = counts(stack)

  def in_order(stack, x):
    for block in stack.blocks():
      x, _ = block(x)
    return x

  want, want_grads = nnx.jit(nnx.value_and_grad(lambda s, x: jnp.sum(jnp.sin(in_order(s, x)))))(stack, x)
  y, grads = nnx.jit(nnx.value_and_grad(lambda s, x: jnp.sum(jnp.sin(s(x)[0]))))(stack, x)
  assert abs(float(y - want)) <= 1e-5 * abs(float(want))
  for got, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    assert relative(got, ref) <= 1e-5
  assert counts(stack) == [c + (dropout > 0) for c in before]
  # Independent initialisation of the stacked blocks.
  theta = nnx.state(stack.recurrent, nnx.Param)["layer"]["theta"][...]
  assert not np.allclose(theta[0], theta[1])


def randomise_norms(module):
  """Non-trivial LayerNorm scales and biases (1 and 0 at init), so that folding them into the step form's
  matmuls is tested."""
  for path, norm in nnx.iter_graph(module):
    if isinstance(norm, nnx.LayerNorm):
      key = jax.random.key(len(path))
      norm.scale[...] = 1.0 + 0.3 * jax.random.normal(key, norm.scale.shape)
      norm.bias[...] = 0.3 * jax.random.normal(jax.random.fold_in(key, 1), norm.bias.shape)


def step_through(step, params, state, x, length):
  """Runs a step form over x [B, T, d] for `length` steps: (final state, outputs [B, length, d])."""
  step = jax.jit(step)
  outputs = []
  for t in range(length):
    state, y = step(params, state, x[:, t])
    outputs.append(y)
  return state, jnp.stack(outputs, axis=1)


@pytest.mark.parametrize("kind", ["recurrent", "mlp"])
def test_residual_block_step_form_equals_parallel_form(kind):
  block = ResidualBlock(SMALL, kind, 5, rngs=nnx.Rngs(0))
  block.eval()
  randomise_norms(block)
  x = jax.random.normal(jax.random.key(1), (2, 12, 16))
  y, h_last = block(x, valid=(jnp.arange(12) < 9).astype(jnp.float32))  # 9 real steps, 3 padding
  params = block.decode_params()
  h, stepped = step_through(ResidualBlock.step, params, ResidualBlock.init_state(params, 2), x, 9)
  np.testing.assert_allclose(stepped, y[:, :9], atol=1e-5, rtol=1e-5)
  if kind == "mlp":
    assert h is None and h_last is None
  else:
    np.testing.assert_allclose(h, h_last, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("length", [12, 7])
def test_temporal_stack_step_form_equals_parallel_form(length):
  stack = TemporalStack(SMALL, 2, 5, rngs=nnx.Rngs(0))
  stack.eval()
  randomise_norms(stack)
  x = jax.random.normal(jax.random.key(1), (2, 12, 16))
  y, state = stack(x, length=length)
  assert len(state.h) == 2 and state.h[0].shape == (2, 16)  # one CG-LRU state per recurrent block
  params = stack.decode_params()
  assert [block.lru is None for block in params] == [False, True, False, True]
  stepped_state, stepped = step_through(TemporalStack.step, params, TemporalStack.init_state(params, 2), x, length)
  np.testing.assert_allclose(stepped, y[:, :length], atol=1e-5, rtol=1e-5)
  for got, want in zip(stepped_state.h, state.h, strict=True):
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_time_chunks_round_trip():
  x = jnp.arange(2 * 10 * 3, dtype=jnp.float32).reshape(2, 10, 3)
  chunks, valid = time_chunks(x, 3)  # 3 chunks of 4 steps, the last holding 2 real steps
  assert chunks.shape == (3, 2, 4, 3) and valid.tolist() == [[1] * 4, [1] * 4, [1, 1, 0, 0]]
  np.testing.assert_array_equal(chunks[1, :, 0], x[:, 4])
  np.testing.assert_array_equal(from_time_chunks(chunks, 10), x)


def logits_and_grads(cfg, tokens):
  model = HarmonicRNN(cfg, rngs=nnx.Rngs(0))
  model.eval()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params):
    model = nnx.merge(graphdef, params, rest, copy=True)
    return loss_bits(model, tokens), model(tokens)

  (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True), compiler_options=compiler_options(cfg))(params)
  return logits, grads


@pytest.fixture(scope="module")
def chunk_tokens_and_reference():
  """1,000 tokens and the unchunked model's logits and gradients on them, computed once for both cases below."""
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 1000)), jnp.int32)
  return tokens, logits_and_grads(SMALL, tokens)


@pytest.mark.heavy
@pytest.mark.parametrize("remat, chunk", [("block", 97), ("stack", 300)])
def test_remat_chunk_computes_the_same_function(remat, chunk, chunk_tokens_and_reference):
  # 1,000 tokens (padded to 1,120 inside): level lengths 1,120 / 560 / 140 / ...; chunks of at most 97 steps
  # (12 of 94 at level 0 and 6 of 94 at level 1, both with a padded last chunk) and 300 (4 and 2 chunks of 280,
  # under remat "stack"); the levels shorter than a chunk run whole. One test per case (each compiles its own
  # gradient), so that the two spread over the test workers.
  tokens, (want_logits, want_grads) = chunk_tokens_and_reference
  logits, grads = logits_and_grads(dataclasses.replace(SMALL, remat=remat, remat_chunk=chunk), tokens)
  assert relative(logits, want_logits) <= 1e-5, (remat, chunk)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    assert relative(got, want) <= 1e-4, (remat, chunk)


def test_remat_chunk_dropout_advances_streams_as_whole():
  # Training mode: each block draws one dropout key per call, chunked or not, and the masks are applied.
  cfg = dataclasses.replace(SMALL, dropout=0.5)
  tokens = jnp.zeros((2, 640), jnp.int32)
  outputs, advanced = [], []
  for chunk in (None, 100):
    model = HarmonicRNN(dataclasses.replace(cfg, remat="block", remat_chunk=chunk), rngs=nnx.Rngs(0))
    outputs.append(nnx.jit(lambda m, x: m(x))(model, tokens))
    advanced.append(counts(model))
  assert advanced[0] == advanced[1] and max(advanced[0]) > 0
  model.eval()
  quiet = nnx.jit(lambda m, x: m(x))(model, tokens)
  assert all(relative(out, quiet) > 1e-3 for out in outputs)  # dropout changed the logits


def test_remat_chunk_config():
  assert dataclasses.replace(SMALL, remat="stack", remat_chunk=4000).remat_chunk == 4000
  for bad in (dict(remat="none", remat_chunk=100), dict(remat="recurrence", remat_chunk=100),
              dict(remat="block", remat_chunk=0), dict(remat="block", remat_chunk=True)):
    with pytest.raises(ConfigError, match="remat_chunk"):
      dataclasses.replace(SMALL, **bad)


def test_remat_chunk_bounds_memory():
  # The gradient's compiled scratch memory at the paper's widths, 2 temporal blocks per path at full rate, 12,800
  # tokens: with time chunks of 800 the backward pass holds one chunk's transients, not the whole sequence's.
  tokens = jnp.zeros((1, 12_800), jnp.int32)
  temp = {}
  for chunk in (None, 800):
    cfg = dataclasses.replace(get_preset("paper"), blocks=(2, 0, 0, 0, 0), remat="block", remat_chunk=chunk)
    model = HarmonicRNN(cfg, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    grad = jax.grad(lambda p: loss_bits(nnx.merge(graphdef, p, rest, copy=True), tokens))
    compiled = jax.jit(grad, compiler_options=compiler_options(cfg)).lower(params).compile()
    temp[chunk] = compiled.memory_analysis().temp_size_in_bytes
  assert temp[800] < 0.5 * temp[None], temp
