"""On a TPU or GPU: the compiled Pallas kernels equal the float64 reference, forward and backward, and the
step-wise model equals the parallel one there. Marked `accelerator` and skipped on CPU (where tests/test_pallas.py
and tests/test_scan.py check the same kernels in interpret mode); `hrnn bench device` runs them, and the last test
here runs that script at tiny sizes on CPU so that it cannot rot."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hrnn.model import sampling
from hrnn.ops import scan
from hrnn.config import get_preset
from hrnn.model.harmonic_rnn import HarmonicRNN
from test_scan import random_inputs, reference, reference_grads, rel_err

ACCELERATOR = 5  # tests marked below


def accelerator(test):
  return pytest.mark.accelerator(pytest.mark.skipif(jax.default_backend() == "cpu", reason="needs a TPU or GPU")(test))


@accelerator
@pytest.mark.parametrize("log2_length", [10, 12, 14, 16])
def test_pallas_matches_float64_reference(log2_length):
  # |a| in [0.5, 1): float32 error stays at rounding level whatever the length. Forward and all cotangents.
  inputs = random_inputs(np.random.default_rng(log2_length), 2, 2**log2_length, 128)
  a, b, h0, dh, dh_last = inputs

  @jax.jit
  def run(a, b, h0, dh, dh_last):
    out, vjp = jax.vjp(lambda a, b, h0: scan.linear_recurrence(a, b, h0, backend="pallas"), a, b, h0)
    return out, vjp((dh, dh_last))

  (h, h_last), grads = run(*inputs)
  want = reference(a, b, h0)
  assert rel_err(h, want) < 1e-5 and rel_err(h_last, want[:, -1]) < 1e-5
  for got, expected in zip(grads, reference_grads(*inputs)):
    assert rel_err(got, expected) < 1e-5


@accelerator
def test_paper_step_logits_equal_parallel_logits():
  # The paper preset on the device: step-wise teacher forcing (generation's program) against the parallel forward
  # (training's, with the platform's default scan kernel), over two innermost blocks.
  model = HarmonicRNN(get_preset("paper"), rngs=nnx.Rngs(0))
  model.eval()
  tokens = jax.random.randint(jax.random.key(1), (2, 320), 0, 256)
  stepped = sampling.teacher_forced(sampling.StepModel.from_model(model), tokens)
  assert float(jnp.max(jnp.abs(stepped - model(tokens)))) <= 1e-3


@pytest.mark.heavy
def test_device_bench_runs_tiny(capsys):
  # `hrnn bench device` at tiny sizes on CPU: every part runs and lands in the one JSON object; the accelerator
  # tests are collected and skipped here.
  from hrnn.cli import main

  main(["bench", "device", "--json", "--backends", "chunked,pallas", "--min-log2", "4", "--max-log2", "4",
        "--channels", "2", "--scan-batch", "1", "--preset", "smoke", "--train-batch", "1", "--train-seq-len", "320",
        "--train-steps", "1", "--sample-batches", "1,2", "--sample-tokens", "160", "--repeats", "1"])
  report = json.loads(capsys.readouterr().out)
  assert report["platform"] == "cpu" and report["default_scan_backend"] == "chunked"
  assert report["tests"] == {"returncode": 0, "passed": 0, "failed": 0, "skipped": ACCELERATOR}
  assert [(r["backend"], r["mode"]) for r in report["scan"]["results"]] == [
      ("chunked", "fwd"), ("chunked", "fwd_bwd"), ("pallas", "fwd"), ("pallas", "fwd_bwd")]
  assert all(r["tokens_per_s"] > 0 and r["length"] == 16 for r in report["scan"]["results"])
  assert report["train"]["preset"] == "smoke" and report["train"]["seq_len"] == 320
  assert report["train"]["tokens_per_s"] > 0
  assert [r["batch"] for r in report["sample"]["results"]] == [1, 2]
  assert all(r["tokens_per_s"] > 0 and r["tokens"] == 160 for r in report["sample"]["results"])
  assert set(report["seconds"]) == {"tests", "scan", "train", "sample"}
