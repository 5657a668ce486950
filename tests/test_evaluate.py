"""Evaluation: bits per sample over a whole split, masked, equal to a hand computation; `hrnn eval`
uses the EMA weights."""

import json

import datasets
import numpy as np
from flax import nnx

from hrnn import data
from hrnn.train.checkpoint import load_model
from hrnn.cli import main
from hrnn.train.evaluate import evaluate
from hrnn.model.harmonic_rnn import HarmonicRNN
from train_fixtures import TINY_MODEL, compile_cache, data_root, run_config, saved_run  # noqa: F401


def _hand_nll(model, examples, seq_len) -> float:
  """sum over examples and their first seq_len tokens of -log2 p(x_t | x_<t) / number of those tokens, with the
  softmax in float64 on the host (logits of all examples in one unsharded call, right-padded: the model is causal,
  so padding after a token never changes its prediction)."""
  examples = [np.asarray(e[:seq_len], np.int32) for e in examples]
  padded = np.zeros((len(examples), max(map(len, examples))), np.int32)
  for i, e in enumerate(examples):
    padded[i, :len(e)] = e
  logits = np.asarray(nnx.jit(lambda m, t: m(t))(model, padded), np.float64)
  bits = count = 0.0
  for row, tokens in zip(logits, examples):
    row = row[:len(tokens)] - row[:len(tokens)].max(axis=-1, keepdims=True)
    log_p = row - np.log(np.exp(row).sum(axis=-1, keepdims=True))
    bits -= log_p[np.arange(len(tokens)), tokens].sum() / np.log(2.0)
    count += len(tokens)
  return bits / count


def test_evaluate_equals_hand_computation_over_whole_split(compile_cache):
  """7 examples of different lengths, some longer than seq_len (cut), batch 3 (the last batch padded with rows),
  on 8 virtual devices (the batch is padded to the mesh)."""
  model = HarmonicRNN(TINY_MODEL, rngs=nnx.Rngs(4))
  model.eval()
  rng = np.random.default_rng(0)
  examples = [rng.integers(0, 256, n).astype(np.uint8) for n in (50, 13, 64, 1, 40, 90, 64)]
  ds = datasets.Dataset.from_dict({"tokens": [e.tolist() for e in examples]})
  nll = evaluate(model, ds, 3, seq_len=64)
  assert abs(nll - _hand_nll(model, examples, 64)) < 1e-5 * nll


def test_hrnn_eval_uses_ema_weights_and_the_whole_test_split(data_root, compile_cache, tmp_path, capsys):
  config = run_config(data_root, model=TINY_MODEL)
  saved_run(tmp_path, config, step=3)
  results = {}
  for flags in ([], ["--raw"]):
    assert main(["eval", "--workdir", str(tmp_path), "--split", "test", "--json", *flags]) == 0
    results[tuple(flags)] = json.loads(capsys.readouterr().out)
  ema, raw = results[()], results[("--raw",)]
  test = data.load_split("sc09-espeak", "test", root=data_root)
  assert (ema["step"], ema["split"], ema["weights"], ema["examples"]) == (3, "test", "ema", len(test))
  model, _ = load_model(tmp_path, ema=True)
  examples = [test[i]["tokens"] for i in range(len(test))]
  assert abs(ema["nll_bits"] - _hand_nll(model, examples, 16000)) < 1e-5 * ema["nll_bits"]
  assert raw["weights"] == "raw" and abs(raw["nll_bits"] - ema["nll_bits"]) > 0.01
