"""Step-wise generation: the step form equals the parallel forward; prefill; sampling; WAVs; CLI; bench."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from flax import nnx

from hrnn.model import sampling
from hrnn.cli import main
from hrnn.config import get_preset
from hrnn.data import dequantize
from hrnn.model.harmonic_rnn import HarmonicRNN, shift_right

TOLERANCE = 1e-4  # max |step logits - parallel logits|, float32


def small(preset: str):
  """A narrow version of a preset with its structure (pool factors, groups kind, one temporal block per path)."""
  cfg = get_preset(preset)
  groups = None if cfg.pool_groups is None else min(cfg.pool_groups, 16)
  return dataclasses.replace(cfg, width=16, lru_width=32, gate_blocks=4, pool_groups=groups,
                             blocks=(1,) * len(cfg.blocks), dropout=0.0)


def make(cfg, seed=0):
  model = HarmonicRNN(cfg, rngs=nnx.Rngs(seed))
  model.eval()
  return model


def random_tokens(batch, length, seed=1):
  return jax.random.randint(jax.random.key(seed), (batch, length), 0, 256)


@pytest.fixture(scope="module")
def paper_small():
  return make(small("paper"))


@pytest.mark.parametrize("preset", ["paper", "paper-groups4", "paper-dense", "one-pool", "no-pool"])
def test_step_logits_equal_parallel_logits(preset):
  # 333 tokens: crosses the innermost (160), every coarser pooling boundary, and ends inside a block.
  model = make(small(preset))
  tokens = random_tokens(2, 333)
  parallel = model(tokens)
  stepped = sampling.teacher_forced(sampling.StepModel.from_model(model), tokens)
  assert stepped.shape == parallel.shape
  assert float(jnp.max(jnp.abs(stepped - parallel))) <= TOLERANCE


def test_paper_preset_step_logits_equal_parallel_logits():
  model = make(get_preset("paper"))
  tokens = random_tokens(1, 320)
  diff = jnp.abs(sampling.teacher_forced(sampling.StepModel.from_model(model), tokens) - model(tokens))
  assert float(jnp.max(diff)) <= TOLERANCE


STEP = jax.jit(sampling.StepModel.step)  # the branching single step, compiled once per shape for every test


def _step_through(step_model, state, inputs):
  """(state, logits [B, T, K]) of one `StepModel.step` per input of inputs [B, T], from `state`."""
  logits = []
  for t in range(inputs.shape[1]):
    state, out = STEP(step_model, state, inputs[:, t])
    logits.append(out)
  return state, jnp.stack(logits, axis=1)


def test_single_steps_and_prefill_continuation_equal_parallel(paper_small):
  tokens = random_tokens(2, 250)
  parallel = paper_small(tokens)
  step_model = sampling.StepModel.from_model(paper_small)
  stepped, from_scratch = _step_through(step_model, step_model.init_state(2), shift_right(tokens))
  assert float(jnp.max(jnp.abs(from_scratch - parallel))) <= TOLERANCE
  _, prefilled = sampling.prefill(paper_small, tokens)  # the state after prefill equals the stepped state
  assert jax.tree.structure(prefilled) == jax.tree.structure(stepped)
  for a, b in zip(jax.tree.leaves(prefilled), jax.tree.leaves(stepped)):
    np.testing.assert_allclose(a, b, atol=TOLERANCE)
  for split in (77, 160):  # inside a block, on a block boundary
    prefill_logits, state = sampling.prefill(paper_small, tokens[:, :split])
    assert int(state.pos) == split
    assert float(jnp.max(jnp.abs(prefill_logits - parallel[:, :split]))) <= TOLERANCE
    _, continued = _step_through(step_model, state, tokens[:, split - 1:-1])
    assert float(jnp.max(jnp.abs(continued - parallel[:, split:]))) <= TOLERANCE


def test_generate_equals_reference_sampler_with_prompt(paper_small):
  # A 170-token prompt: one whole block is prefilled, 10 tokens are forced through the fast loop.
  prompt = np.asarray(random_tokens(1, 170)[0])
  out = sampling.generate(paper_small, 2, 130, prompt=prompt, temperature=0.8, seed=5, progress=False)
  assert out.shape == (2, 300) and out.dtype == np.int32
  np.testing.assert_array_equal(out[:, :170], np.broadcast_to(prompt, (2, 170)))
  # Reference: prefill the whole prompt, then one branching step at a time with the same keys.
  step_model = sampling.StepModel.from_model(paper_small)
  _, state = sampling.prefill(paper_small, jnp.asarray(np.broadcast_to(prompt, (2, 170))))
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(5), i))(jnp.arange(2))
  token, reference = jnp.full((2,), prompt[-1], jnp.int32), []
  for _ in range(130):
    pos = state.pos
    state, logits = STEP(step_model, state, token)
    token = sampling.categorical(keys, pos, logits, jnp.float32(0.8))
    reference.append(np.asarray(token))
  np.testing.assert_array_equal(out[:, 170:], np.stack(reference, axis=1))


def test_fixed_seed_gives_identical_samples_of_any_length(paper_small):
  first = sampling.generate(paper_small, 3, 333, seed=7, progress=False, batch_size=2)
  again = sampling.generate(paper_small, 3, 333, seed=7, progress=False, batch_size=3)
  other = sampling.generate(paper_small, 3, 333, seed=8, progress=False, batch_size=3)
  assert first.shape == (3, 333)  # not a multiple of 160
  np.testing.assert_array_equal(first, again)  # the batch size does not change a stream
  assert np.mean(first != other) > 0.5
  assert len(np.unique(first)) > 64  # a random-init model is close to uniform over 256 classes


def test_sample_stream_chunks_concatenate_to_one_run(paper_small):
  step_model = sampling.StepModel.from_model(paper_small)
  keys = jax.random.split(jax.random.key(0), 2)
  begin = lambda: (step_model.init_state(2), jnp.zeros((2,), jnp.int32))
  whole = list(sampling.sample_stream(step_model, *begin(), 700, keys=keys, chunk_tokens=1600))
  pieces = list(sampling.sample_stream(step_model, *begin(), 700, keys=keys, chunk_tokens=160))
  assert [c.shape[1] for c in whole] == [700] and [c.shape[1] for c in pieces] == [160, 160, 160, 160, 60]
  np.testing.assert_array_equal(whole[0], np.concatenate(pieces, axis=1))
  _, state = sampling.prefill(paper_small, random_tokens(2, 77))
  with pytest.raises(sampling.SamplingError, match="multiple of 160"):
    next(sampling.sample_stream(step_model, state, jnp.zeros((2,), jnp.int32), 10, keys=keys))


@pytest.mark.parametrize("placement", ["fresh", "one-device", "replicated"])
def test_a_run_of_many_chunks_compiles_the_sampler_once(placement):
  # A checkpoint's arrays come back committed to a device, a fresh model's are not, a model trained on a mesh has
  # them replicated; each way the second chunk (whose state is the first chunk's output) must reuse the first
  # chunk's program.
  model = make(dataclasses.replace(small("paper"), width=8, lru_width=16))
  if placement != "fresh":
    graphdef, state = nnx.split(model)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("data",))
    where = jax.devices()[0] if placement == "one-device" else jax.NamedSharding(mesh, jax.P())
    model = nnx.merge(graphdef, jax.device_put(state, where))
  sampling.sample_chunk.clear_cache()
  sampling.generate(model, 2, 3 * sampling.CHUNK_TOKENS, batch_size=2, progress=False)
  assert sampling.sample_chunk._cache_size() == 1


def test_categorical_follows_softmax_with_temperature():
  logits = jnp.log(jnp.asarray([[0.1, 0.2, 0.3, 0.4]] * 4))
  keys = jax.random.split(jax.random.key(0), 4)
  draw = jax.jit(jax.vmap(lambda pos, temperature: sampling.categorical(keys, pos, logits, temperature),
                          in_axes=(0, None)))
  positions = jnp.arange(5000)
  freq = np.bincount(np.asarray(draw(positions, 1.0)).ravel(), minlength=4) / (5000 * 4)
  np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
  cold = np.bincount(np.asarray(draw(positions, 0.25)).ravel(), minlength=4) / (5000 * 4)
  expected = np.array([1, 2, 3, 4], float) ** 4 / np.sum(np.array([1, 2, 3, 4], float) ** 4)
  np.testing.assert_allclose(cold, expected, atol=0.015)


@pytest.mark.parametrize("quantization", ["mu-law", "linear"])
def test_generate_streams_wavs_that_decode_the_tokens(paper_small, tmp_path, quantization):
  tokens = sampling.generate(paper_small, 2, 1700, seed=1, quantization=quantization, progress=False)
  paths = sampling.generate(paper_small, 2, 1700, seed=1, out_dir=tmp_path, quantization=quantization,
                            progress=False)
  assert [p.name for p in paths] == ["sample_00000.wav", "sample_00001.wav"]
  for path, row in zip(paths, tokens):
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16_000 and sf.info(path).subtype == "PCM_16" and audio.shape == (1700,)
    np.testing.assert_allclose(audio, dequantize(row, quantization), atol=1.0 / 2**15)


def test_generate_rejects_bad_arguments(paper_small):
  with pytest.raises(sampling.SamplingError, match="temperature"):
    sampling.generate(paper_small, 1, 10, temperature=0.0, progress=False)
  with pytest.raises(sampling.SamplingError, match="0..255"):
    sampling.generate(paper_small, 1, 10, prompt=np.array([3, 256]), progress=False)
  with pytest.raises(sampling.SamplingError, match="n_samples"):
    sampling.generate(paper_small, 2, 10, prompt=np.zeros((3, 5), np.int32), progress=False)
  with pytest.raises(sampling.SamplingError, match=">= 1"):
    sampling.generate(paper_small, 0, 10, progress=False)


def test_cli_sample_with_prompt(tmp_path, capsys):
  prompt = tmp_path / "prompt.wav"
  t = np.arange(8000) / 16_000
  sf.write(prompt, 0.5 * np.sin(2 * np.pi * 440 * t), 16_000, subtype="PCM_16")
  out = tmp_path / "samples"
  assert main(["sample", "--preset", "smoke", "--n", "2", "--seconds", "0.02", "--out", str(out), "--prompt",
               str(prompt), "--prompt-seconds", "0.0125", "--seed", "3"]) == 0
  assert "wrote 2 samples" in capsys.readouterr().out
  for name in ("sample_00000.wav", "sample_00001.wav"):
    audio, _ = sf.read(out / name, dtype="float32")
    assert audio.shape == (200 + 320,)  # prompt + generated
  assert main(["sample", "--preset", "smoke", "--n", "1", "--seconds", "1", "--out", str(out), "--prompt",
               str(prompt), "--prompt-seconds", "2"]) == 2  # the prompt file is shorter than asked


def test_bench_sample_json(capsys):
  assert main(["bench", "sample", "--preset", "smoke", "--batch", "2", "--tokens", "200", "--repeats", "1",
               "--naive-tokens", "4", "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["preset"] == "smoke" and result["batch"] == 2 and result["tokens"] == 320  # whole blocks
  for key in ("tokens_per_s", "compile_s", "peak_rss_mb", "naive_tokens_per_s", "flop_bound_tokens_per_s"):
    assert result[key] > 0
  assert result["tokens_per_s"] > result["naive_tokens_per_s"]


def test_flops_per_token_from_the_shapes(paper_small):
  from hrnn.bench.sample import matmuls_per_token

  params = sampling.StepModel.from_model(paper_small).params
  d, n_h, gate_blocks, rates = 16, 32, 4, (1, 2, 8, 32, 160)  # small("paper"): one temporal block per path
  recurrent = d * (n_h + d) + n_h * n_h // gate_blocks + n_h * d + d * d  # fused in/gate, both gates, readout, out
  mlp = d * 4 * d + 2 * d * d
  blocks = sum(2 * (recurrent + mlp) / r for r in rates[:4]) + (recurrent + mlp) / 160
  pools = sum(d / r + d / (r * p) * p for r, p in zip(rates[:4], (2, 4, 4, 5)))  # depthwise down and up
  expected = blocks + pools + d * 256
  assert sum(uses * macs for uses, macs in matmuls_per_token(params)) == pytest.approx(expected, rel=1e-12)
