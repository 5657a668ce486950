"""hrnn.experiments helpers that the notebooks rely on beyond training (which tests/test_notebooks.py runs)."""

import math

import numpy as np
from flax import nnx

from hrnn import experiments
from hrnn.config import get_preset
from hrnn.model import HarmonicRNN, nll_bits


def test_sequence_log_likelihoods_sum_each_rows_log_probabilities_once_compiled():
  model = HarmonicRNN(get_preset("smoke"), rngs=nnx.Rngs(0))
  model.eval()
  tokens = np.random.default_rng(0).integers(0, 256, (3, 320)).astype(np.int32)
  got = experiments.sequence_log_likelihoods(model, tokens)
  for row, log_p in zip(tokens, got):
    bits, count = nll_bits(model(row[None]), row[None])
    assert count == 320 and math.isclose(log_p, -float(bits) * math.log(2), rel_tol=1e-5)
  assert got[0] != got[1]  # per row, not a batch total
  # One jitted function for every call: a function jitted anew per call would compile again for every batch.
  compiled = experiments._row_log_likelihoods()
  experiments.sequence_log_likelihoods(model, tokens)
  assert experiments._row_log_likelihoods() is compiled
