"""hrnn.paper.experiments helpers that the notebooks rely on beyond training (which tests/test_notebooks.py runs)."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf
from flax import nnx

from hrnn.paper import experiments
from hrnn.model import sampling
from hrnn.config import get_preset, train_config
from hrnn.model.harmonic_rnn import HarmonicRNN, nll_bits


def _model():
  model = HarmonicRNN(get_preset("smoke"), rngs=nnx.Rngs(0))
  model.eval()
  return model


def test_sequence_log_likelihoods_sum_each_rows_log_probabilities():
  model = _model()
  tokens = np.random.default_rng(0).integers(0, 256, (3, 320)).astype(np.int32)
  got = experiments.sequence_log_likelihoods(model, tokens)
  for row, log_p in zip(tokens, got):
    bits, count = nll_bits(model(row[None]), row[None])
    assert count == 320 and math.isclose(log_p, -float(bits) * math.log(2), rel_tol=1e-5)
  assert got[0] != got[1]  # per row, not a batch total


@dataclasses.dataclass(frozen=True)
class _Run(experiments.Run):
  """A run whose EMA model is given (no checkpoint needed)."""

  model: nnx.Module = None

  def load(self):
    return self.model


def _wav(path: Path) -> np.ndarray:
  return sf.read(str(path), dtype="int16")[0]


def test_generate_samples_do_not_depend_on_the_batch_size(tmp_path):
  model = _model()
  config = train_config("smoke", "sc09-espeak")
  run = _Run("baseline", config, tmp_path / "run", math.nan, 0, model)
  one = experiments.generate(run, tmp_path, "one", 3, 320, batch_size=1, seed=5, likelihoods=True, progress=False)
  three = experiments.generate(run, tmp_path, "three", 3, 320, batch_size=3, seed=5, likelihoods=True,
                               progress=False)
  assert [p.name for p in one.paths] == [p.name for p in three.paths] == [f"sample_0000{i}.wav" for i in range(3)]
  for a, b in zip(one.paths, three.paths):
    assert len(_wav(a)) == 320
    np.testing.assert_array_equal(_wav(a), _wav(b))
  np.testing.assert_allclose(one.log_likelihoods, three.log_likelihoods, rtol=1e-5)
  assert one.tokens_per_s > 0 and len(set(one.log_likelihoods)) == 3
  # The WAVs are hrnn.model.sampling's streams (seed, stream), decoded with the dataset's quantization; the likelihoods
  # are those of the generated tokens.
  tokens = sampling.generate(model, 3, 320, seed=5, batch_size=2, progress=False)
  expected = sampling.write_wavs(tokens, tmp_path / "direct", "mu-law")
  for a, b in zip(one.paths, expected):
    np.testing.assert_array_equal(_wav(a), _wav(b))
  np.testing.assert_allclose(one.log_likelihoods, experiments.sequence_log_likelihoods(model, tokens), rtol=1e-5)
  # Another seed, other samples; the same request again is read back, not generated.
  other = experiments.generate(run, tmp_path, "other", 3, 320, batch_size=3, seed=6, progress=False)
  assert not np.array_equal(_wav(other.paths[0]), _wav(one.paths[0])) and math.isnan(other.log_likelihoods[0])
  record = json.loads((tmp_path / "samples" / "three" / "samples.json").read_text())
  assert experiments.generate(run, tmp_path, "three", 3, 320, batch_size=3, seed=5, likelihoods=True,
                              progress=False).tokens_per_s == record["tokens_per_s"]


def test_generate_times_one_batch_of_the_training_shape_and_samples_in_its_own_batches(tmp_path, monkeypatch):
  # The paper: "inference batch size and sequence length were the same as during training". The smoke training
  # config is batch 4, crops of 1,600 tokens; the clips themselves come in batches of up to 32 streams.
  calls = []
  real = sampling.generate

  def spy(model, n, n_tokens, **kwargs):
    calls.append((n, n_tokens, kwargs["batch_size"]))
    return real(model, n, n_tokens, **kwargs)

  monkeypatch.setattr(sampling, "generate", spy)
  config = train_config("smoke", "sc09-espeak")
  assert (config.batch_size, config.seq_len) == (4, 1600)
  run = _Run("baseline", config, tmp_path / "run", math.nan, 0, _model())
  samples = experiments.generate(run, tmp_path, "five", 5, 320, progress=False)
  assert calls == [(4, 1, 4), (4, 1600, 4), (5, 320, 5)]
  assert len(samples.paths) == 5 and samples.tokens_per_s > 0
