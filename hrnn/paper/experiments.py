"""The paper's experiments at a run scale (`hrnn.config.Scale`): what the notebooks call, so that they stay thin.

  prepare_data(scale, *names)                  build (embedded) or download (real) datasets; no-op when present
  train(scale, variant, dataset, out) -> Run   a model trained in OUT/runs/DATASET/VARIANT (finished runs reused,
                                               interrupted ones resumed), with its curves and test NLL
  generate(run, out, name, n, ...) -> Samples  WAV files in OUT/samples/NAME with their likelihoods and the
                                               inference throughput (reused when the run already generated them)
  sc09_samples(run, scale, out) -> Samples     the scale's SC09 sample set of a run (scored by FID / IS)
  unigram_entropy(dataset)                     bits per token of the token histogram: what "learned" must beat
  digit_classifier(scale, out)                 the SC09 digit classifier, trained once per OUT (or a given file)
  quality(samples, scale, classifier)          FID / IS / mIS / AM of the samples and of the real train/test splits

Runs, samples and the classifier are shared between notebooks through OUT: the baseline trained by one notebook is
the baseline of the next. Training configurations come from `hrnn.config.train_config`, samples from
`hrnn.model.sampling.generate`, likelihoods from `hrnn.model.harmonic_rnn.log_likelihoods`, curves from
`hrnn.train.loop.read_metrics`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx

from hrnn import data, metrics
from hrnn.model import sampling
from hrnn.train.checkpoint import load_model, read_config
from hrnn.config import SAMPLE_BATCH, Scale, TrainConfig, train_config
from hrnn.model.harmonic_rnn import count_params, log_likelihoods
from hrnn.model.summary import abstract_model
from hrnn.train.loop import logged_test_nll, read_metrics, train_and_evaluate


def prepare_data(scale: Scale, *names: str) -> None:
  """Makes each dataset ready under the data root ($HRNN_DATA or ~/.cache/hrnn/data): embedded ones are built at
  the scale's size (`sc09_size` for SC09's layout, `music_size` otherwise), real ones downloaded from the hub."""
  for name in names:
    sc09_layout = data.get_spec(name).layout == "sc09"
    data.prepare(name, size=scale.sc09_size if sc09_layout else scale.music_size, seed=0)


@dataclasses.dataclass(frozen=True)
class Run:
  """A finished training run.

  Attributes:
    variant: the model variant (hrnn.config.VARIANTS).
    config: its TrainConfig.
    workdir: OUT/runs/DATASET/VARIANT (checkpoints, metrics.jsonl, config.json).
    test_nll: test bits per sample of the EMA weights.
    params: number of model parameters.
  """

  variant: str
  config: TrainConfig
  workdir: Path
  test_nll: float
  params: int

  def history(self) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, evaluation) pandas DataFrames of WORKDIR/metrics.jsonl (`hrnn.train.loop.read_metrics`): train rows have
    step, epoch, loss_bits, lr, grad_norm, tokens_per_s, epochs_per_hour; evaluation rows step, split ("valid" /
    "test"), nll_bits."""
    records = read_metrics(self.workdir)
    train_rows = pd.DataFrame([r for r in records if "split" not in r])
    eval_rows = pd.DataFrame([r for r in records if "split" in r], columns=["step", "split", "nll_bits"])
    return train_rows, eval_rows

  def train_speed(self) -> float:
    """Training throughput in epochs per hour: the median over the logged intervals (compilation excluded)."""
    train_rows, _ = self.history()
    return float(train_rows["epochs_per_hour"].dropna().median())

  def load(self) -> nnx.Module:
    """The model with its EMA weights, in eval mode."""
    return load_model(self.workdir)[0]


def train(scale: Scale, variant: str, dataset: str, out: str | os.PathLike, *, progress: bool = True) -> Run:
  """Trains `variant` on `dataset` in OUT/runs/DATASET/VARIANT (VARIANT-seedS for a scale seed S != 0) and
  evaluates it on the test split.

  A finished run in that directory is reused (its logged test NLL is read back); an interrupted one resumes from
  its last checkpoint. Raises hrnn.train.checkpoint.CheckpointError when the directory holds a different run.
  """
  config = train_config(dataset=dataset, scale=scale, variant=variant)
  workdir = Path(out) / "runs" / dataset / (variant if scale.seed == 0 else f"{variant}-seed{scale.seed}")
  test_nll = finished_test_nll(config, workdir)
  if test_nll is None:
    result = train_and_evaluate(config, workdir, progress=progress)
    if result.interrupted:
      raise KeyboardInterrupt(f"training of {workdir} was interrupted at step {result.step}; run again to resume")
    test_nll = result.test_nll
  return Run(variant, config, workdir, test_nll, count_params(abstract_model(config.model)))


def finished_test_nll(config: TrainConfig, workdir: Path) -> float | None:
  """The test NLL that a finished run of exactly `config` logged in `workdir`, else None. Reading it back costs
  nothing, where `train_and_evaluate` would first rebuild and restore the training state."""
  if read_config(workdir) != config:
    return None
  total = config.steps or config.epochs * data.num_batches(
      data.load_split(config.dataset, "train", root=config.data_root), config.batch_size)
  return logged_test_nll(workdir, total)


@dataclasses.dataclass(frozen=True)
class Samples:
  """Generated audio: `paths` (16 kHz WAV), each sample's log-likelihood under the model (nats), and the
  generation throughput in tokens per second."""

  directory: Path
  paths: tuple[Path, ...]
  log_likelihoods: tuple[float, ...]
  tokens_per_s: float


def generate(run: Run, out: str | os.PathLike, name: str, n: int, n_tokens: int | None = None, *,
             batch_size: int = SAMPLE_BATCH, seed: int = 0, likelihoods: bool = False, progress: bool = True) -> Samples:
  """Samples `n` clips of `n_tokens` (default: the dataset's example length) from the run's EMA model into
  OUT/samples/NAME/sample_NNNNN.wav with `hrnn.model.sampling.generate`: stream i is keyed by (seed, i), so the clips do
  not depend on `batch_size`, the streams generated at a time. With `likelihoods`, each clip's log-likelihood under
  the model is computed (one parallel forward pass per batch), for SaShiMi's likelihood band; else they are NaN.

  Throughput (`Samples.tokens_per_s`) is measured as the paper measured it ("inference batch size and sequence
  length were the same as during training"): one batch of the run's training batch size and sequence length, timed
  after a one-token run has compiled the sampler. The clips themselves are generated in batches of `batch_size`,
  which is faster on a CPU than the small training batch. Reused when OUT/samples/NAME already holds the same
  request from the same run.
  """
  spec = data.get_spec(run.config.dataset, run.config.data_root)
  n_tokens = n_tokens or spec.length
  batch_size = min(batch_size, n)
  directory = Path(out) / "samples" / name
  request = {"run": str(run.workdir.resolve()), "n": n, "n_tokens": n_tokens, "batch_size": batch_size,
             "seed": seed, "likelihoods": likelihoods, "streams": "keyed by (seed, stream)"}
  record = directory / "samples.json"
  if record.exists() and json.loads(record.read_text())["request"] == request:
    saved = json.loads(record.read_text())
    return Samples(directory, tuple(directory / p for p in saved["files"]),
                   tuple(math.nan if x is None else x for x in saved["log_likelihoods"]), saved["tokens_per_s"])
  model = run.load()
  tokens_per_s = _inference_speed(model, run.config.batch_size, run.config.seq_len or spec.length)
  tokens = sampling.generate(model, n, n_tokens, seed=seed, batch_size=batch_size, progress=progress)
  paths = sampling.write_wavs(tokens, directory, spec.quantization)
  log_likelihoods = [math.nan] * n
  if likelihoods:  # one forward pass per batch of samples
    log_likelihoods = [ll for first in range(0, n, batch_size)
                       for ll in sequence_log_likelihoods(model, tokens[first:first + batch_size])]
  record.write_text(json.dumps({"request": request, "files": [p.name for p in paths],  # JSON has no NaN: null
                                "log_likelihoods": [None if math.isnan(x) else x for x in log_likelihoods],
                                "tokens_per_s": tokens_per_s}, indent=1))
  return Samples(directory, tuple(paths), tuple(log_likelihoods), tokens_per_s)


def _inference_speed(model: nnx.Module, batch_size: int, n_tokens: int) -> float:
  """Tokens per second of `hrnn.model.sampling.generate` for `batch_size` streams of `n_tokens` each, timed after a
  one-token run of the same batch has compiled the sampler (compilation excluded)."""
  sampling.generate(model, batch_size, 1, batch_size=batch_size, progress=False)
  start = time.perf_counter()
  tokens = sampling.generate(model, batch_size, n_tokens, batch_size=batch_size, progress=False)
  return tokens.size / (time.perf_counter() - start)


def sc09_samples(run: Run, scale: Scale, out: str | os.PathLike, *, seed: int = 0) -> Samples:
  """The scale's SC09 sample set of a run (`scale.n_samples` clips of `scale.sample_tokens`, with likelihoods when
  the scale scores a likelihood band) in OUT/samples/DATASET-VARIANT (-seedS for a run of training seed S != 0):
  the set every notebook scores."""
  name = f"{run.config.dataset}-{run.variant}" + (f"-seed{run.config.seed}" if run.config.seed else "")
  return generate(run, out, name, scale.n_samples, scale.sample_tokens, seed=seed, likelihoods=scale.likelihood_band)


def sequence_log_likelihoods(model: nnx.Module, tokens: np.ndarray) -> list[float]:
  """log p(x) = sum_t log p(x_t | x_<t) in nats of each row of int tokens [B, T] (one parallel forward pass)."""
  return [float(x) for x in _row_log_likelihoods(model, jnp.asarray(tokens, jnp.int32))]


@nnx.jit
def _row_log_likelihoods(model: nnx.Module, tokens: jnp.ndarray) -> jnp.ndarray:
  # Jitted once at module level: a function jitted anew on every call would be compiled again for every batch.
  return log_likelihoods(model(tokens), tokens).sum(axis=-1)


def unigram_entropy(dataset: str, split: str = "test") -> float:
  """Entropy in bits of the split's token histogram (real tokens only): the NLL of the best model that ignores
  the past. A model below it has learned temporal structure; 8 bits is uniform guessing."""
  ds = data.load_split(dataset, split)
  counts = np.zeros(256)
  for row in ds:
    counts += np.bincount(np.asarray(row["tokens"])[:row["length"]], minlength=256)
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log2(p)).sum())


def digit_classifier(scale: Scale, out: str | os.PathLike, path: str | os.PathLike | None = None):
  """(classifier, info) for the SC09 metrics: the file at `path` when given (e.g. SaShiMi's resnext.pth), else
  the one this OUT trained on `scale.sc09` (OUT/classifier/DATASET.pt), trained now when missing.

  info["source"] names the classifier; for one trained by hrnn info also holds its train / valid / test accuracy.
  """
  if path is not None:
    return metrics.load_classifier(path)
  saved = Path(out) / "classifier" / f"{scale.sc09}.pt"
  if saved.exists():
    return metrics.load_classifier(saved)
  settings = metrics.TrainSettings(epochs=scale.classifier_epochs, seed=scale.seed)
  model, info = metrics.train_classifier(scale.sc09, scale.classifier_size, settings=settings, out=saved)
  return model, {**info, "source": f"hrnn classifier {saved.name}"}


def quality(samples: Samples, scale: Scale, classifier) -> dict[str, dict[str, float]]:
  """SaShiMi's SC09 protocol: {"samples", "train", "test"} -> {"fid", "is", "mis", "am", ...}, every set scored
  against the training split of `scale.sc09` (hrnn.metrics.score). With `scale.likelihood_band` only the samples
  SaShiMi's script scores are: the 40%..95% likelihood band of the held-out half of its seeded random split."""
  likelihoods = list(samples.log_likelihoods) if scale.likelihood_band else None
  result = metrics.score(samples.directory, reference=scale.sc09, classifier=classifier, likelihoods=likelihoods)
  return result["rows"]
