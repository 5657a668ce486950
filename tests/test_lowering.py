"""Cross-lowering: what users run on TPUs and GPUs compiles for them, checked from this CPU host.

`jax.export` with platforms ["tpu"] and ["cuda"] lowers each program for that platform (the Pallas TPU kernel to a
Mosaic `tpu_custom_call`, the GPU kernel to a Triton call), so a kernel that breaks a target's rules, or a CPU-only
kernel left in an accelerator program, fails here. The native CPU kernels are the one thing allowed to be absent.
"""

import dataclasses

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from hrnn.model import sampling
from hrnn.ops import scan
from hrnn.train import loop
from hrnn.config import TrainConfig, get_preset
from hrnn.model.harmonic_rnn import HarmonicRNN

PLATFORMS = ("tpu", "cuda")
PALLAS_CALL = {"tpu": "stablehlo.custom_call @tpu_custom_call", "cuda": "stablehlo.custom_call @__gpu$xla.gpu.triton"}
NATIVE_CALL = "@hrnn_scan"  # the native CPU kernels' FFI targets
# Triton calls carry no cross-version compatibility guarantee: jax.export serialises them only when told to.
DISABLED_CHECKS = [jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]


def lowered_text(fun, platform: str, *args) -> str:
  """The StableHLO module of `fun(*args)` exported for `platform`."""
  exported = jax.export.export(fun, platforms=[platform], disabled_checks=DISABLED_CHECKS)(*args)
  text = exported.mlir_module()
  assert NATIVE_CALL not in text
  return text


def abstract(shape, dtype):
  return jax.ShapeDtypeStruct(shape, dtype)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("backend", scan.BACKENDS + (None,))
def test_scan_backends_lower(backend, platform):
  # Forward alone and forward + backward of linear_recurrence with an initial state, complex64 [2, 1600, 128].
  a = abstract((2, 1600, 128), jnp.complex64)
  h0 = abstract((2, 128), jnp.complex64)

  def forward(a, b, h0):
    return scan.linear_recurrence(a, b, h0, backend=backend)

  def loss(a, b, h0):
    h, h_last = forward(a, b, h0)
    return jnp.sum(jnp.abs(h) ** 2) + jnp.sum(jnp.abs(h_last))

  fwd = lowered_text(jax.jit(forward), platform, a, a, h0)
  bwd = lowered_text(jax.jit(jax.grad(loss, argnums=(0, 1, 2))), platform, a, a, h0)
  pallas = backend == "pallas" or (backend is None and scan.default_backend(platform) == "pallas")
  call = PALLAS_CALL[platform]
  if pallas:  # one kernel forward; the gradient adds the reverse-time kernel (the TPU forward kernel is fused)
    assert fwd.count(call) >= 1 and bwd.count(call) >= 2
  else:
    assert call not in fwd and call not in bwd


def test_tpu_kernel_is_one_call_over_time():
  # The TPU kernel runs the whole sequence in one pallas_call (time is a grid axis, not a loop of calls), and the
  # time axis is the sequential ("arbitrary") one.
  a = abstract((32, 16_000, 128), jnp.complex64)
  h0 = abstract((32, 128), jnp.complex64)
  text = lowered_text(jax.jit(lambda a, b, h0: scan.linear_recurrence(a, b, h0, backend="pallas")), "tpu", a, a, h0)
  assert text.count(PALLAS_CALL["tpu"]) == 1 and "stablehlo.while" not in text


# The paper model's widths (the kernels' block shapes: 128 complex channels, 32 gate blocks), its 4 temporal blocks
# per path and two of its four pooling levels (factors 2 and 4) around the innermost stack. Every level runs the same
# code (a TemporalStack, one lax.scan over its pairs, and a pooling layer), so the paper's two further levels would
# only repeat code paths already exported here: at 1,600 tokens the levels are 1,600 and 800 steps long (time-chunked:
# 4 and 2 chunks of 400) and the innermost stack 200 (shorter than a chunk: whole, as the paper's inner levels).
# Export time grows with the levels; the five-level paper model: test_full_paper_train_step_lowers (slow).
SHORT_PAPER = dict(pool_factors=(2, 4), blocks=(4, 4, 4))


def paper_config(levels: dict | None = SHORT_PAPER, **overrides) -> TrainConfig:
  """The paper preset with both memory savers on, at a short length; `levels`: its pooling levels replaced by
  these (None: the paper's own)."""
  model = dataclasses.replace(get_preset("paper"), remat="block", remat_chunk=400, **(levels or {}))
  values = dict(model=model, preset="paper", batch_size=2, seq_len=1600, steps=1, epochs=None, mesh_data=1)
  return TrainConfig(**{**values, **overrides})


def train_step_text(config: TrainConfig, platform: str) -> str:
  """The real jitted train step of `config` (hrnn.train.loop.make_train_step) exported for `platform`."""
  schedule = loop.learning_rate_schedule(config, 10)
  optimizer = loop.make_optimizer(config, schedule)
  mesh = loop.make_mesh(config)
  step = loop.make_train_step(loop.model_graph(config, dropout=True), config, optimizer, schedule, mesh)
  state = jax.eval_shape(lambda: loop.init_state(config, optimizer))
  rows, length = config.batch_size, config.seq_len
  batch = {"tokens": abstract((rows, length), jnp.int32), "mask": abstract((rows, length), jnp.float32)}
  return lowered_text(step, platform, state, batch)


def with_backend(config: TrainConfig, backend: str | None) -> TrainConfig:
  return dataclasses.replace(config, model=dataclasses.replace(config.model, scan_backend=backend))


# The default backend on TPU is the Pallas kernel; on GPU the Pallas kernel is asked for (the GPU default, the
# associative scan, lowers in test_scan_backends_lower).
STEP_BACKENDS = [("tpu", None), ("cuda", "pallas")]


@pytest.mark.heavy
@pytest.mark.parametrize("platform, backend", STEP_BACKENDS)
def test_paper_train_step_lowers(platform, backend):
  text = train_step_text(with_backend(paper_config(), backend), platform)
  assert (PALLAS_CALL[platform] in text) == (backend == "pallas" or scan.default_backend(platform) == "pallas")


@pytest.mark.slow
@pytest.mark.parametrize("platform, backend", STEP_BACKENDS)
def test_full_paper_train_step_lowers(platform, backend):
  # The paper model as it is (five levels: 1,600 / 800 / 200 / 50 / 10 steps), minutes of CPU per export.
  text = train_step_text(with_backend(paper_config(levels=None), backend), platform)
  assert PALLAS_CALL[platform] in text


@pytest.mark.heavy
@pytest.mark.parametrize("platform, backend", STEP_BACKENDS)
def test_context_parallel_train_step_lowers(platform, backend):
  # The sharded step on the 8-device ("data", "seq") = (2, 4) mesh: time sharded 4 ways, so each recurrence also
  # gathers the shards' summaries; the Pallas kernels run inside shard_map. 640 local steps at the outer level
  # (chunked: 2 chunks of 320), 320 at the next and 80 in the innermost stack (whole).
  assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8 (make test does)"
  config = paper_config(batch_size=2, seq_len=2560, mesh_data=2, mesh_seq=4)
  text = train_step_text(with_backend(config, backend), platform)
  assert PALLAS_CALL[platform] in text and "all_gather" in text and "num_partitions = 8" in text


@pytest.fixture(scope="module")
def paper_step_model():
  """The sampler's step-wise paper model, built from real arrays (the step form needs them) once for both
  platforms."""
  model = HarmonicRNN(get_preset("paper"), rngs=nnx.Rngs(0))
  model.eval()
  return sampling.StepModel.from_model(model)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_generate_loop_lowers(platform, paper_step_model):
  # The sampler's compiled program (hrnn.model.sampling.sample_chunk: the step-wise model, blocks of R tokens) for the
  # paper preset: step-wise generation uses no scan kernel, only the layers' single steps.
  step_model = paper_step_model
  batch, total_pool = 4, step_model.total_pool
  args = (step_model, step_model.init_state(batch), abstract((batch,), jnp.int32),
          jax.random.split(jax.random.key(0), batch), abstract((), jnp.float32), abstract((), jnp.int32),
          abstract((batch, total_pool), jnp.int32), abstract((), jnp.int32))
  text = lowered_text(jax.jit(lambda *args: sampling.sample_chunk(*args, length=2 * total_pool)), platform, *args)
  assert "stablehlo.while" in text and "tensor<4x320xi32>" in text
