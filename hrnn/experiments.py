"""The paper's experiments at a run scale (`hrnn.scales`): what the notebooks call, so that they stay thin.

  prepare_data(scale, *names)                  build (embedded) or download (real) datasets; no-op when present
  train(scale, variant, dataset, out) -> Run   a model trained in OUT/runs/DATASET/VARIANT (finished runs reused,
                                               interrupted ones resumed), with its curves and test NLL
  generate(run, out, name, n, ...) -> Samples  WAV files in OUT/samples/NAME with their likelihoods and throughput
                                               (reused when the same run already generated them)
  sc09_samples(run, scale, out) -> Samples     the scale's SC09 sample set of a run (scored by FID / IS)
  unigram_entropy(dataset)                     bits per token of the token histogram: what "learned" must beat
  digit_classifier(scale, out)                 the SC09 digit classifier, trained once per OUT (or a given file)
  quality(samples, scale, classifier)          FID / IS / mIS / AM of the samples and of the real train/test splits
  predicted_digits(paths, classifier)          the classifier's digit for each clip (the listening panel)

Runs, samples and the classifier are shared between notebooks through OUT: the baseline trained by one notebook is
the baseline of the next.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path

from hrnn import data
from hrnn.config import TrainConfig, train_config
from hrnn.scales import Scale, model_config


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
    variant: the model variant (hrnn.scales.VARIANTS).
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

  def history(self):
    """(train, evaluation) pandas DataFrames of WORKDIR/metrics.jsonl: train rows have step, epoch, loss_bits,
    lr, grad_norm, tokens_per_s, epochs_per_hour; evaluation rows step, split ("valid" / "test"), nll_bits."""
    import pandas as pd

    records = [json.loads(line) for line in (self.workdir / "metrics.jsonl").read_text().splitlines() if line]
    train_rows = pd.DataFrame([r for r in records if "split" not in r])
    eval_rows = pd.DataFrame([r for r in records if "split" in r], columns=["step", "split", "nll_bits"])
    return train_rows, eval_rows

  def train_speed(self) -> float:
    """Training throughput in epochs per hour: the median over the logged intervals (compilation excluded)."""
    train_rows, _ = self.history()
    return float(train_rows["epochs_per_hour"].dropna().median())

  def load(self):
    """The model with its EMA weights, in eval mode."""
    from hrnn.checkpoint import load_model

    return load_model(self.workdir)[0]


def run_config(scale: Scale, variant: str, dataset: str) -> TrainConfig:
  """The TrainConfig of `variant` of the scale's model trained on `dataset` at the scale's lengths.

  Training examples shorter than the dataset's are random crops, so that every part of a clip is learned. Music
  runs are evaluated on the test split only (no validation curve: whole minute-long clips are costly).
  """
  spec = data.get_spec(dataset)
  music = spec.layout != "sc09"
  steps = scale.music_steps if music and scale.music_steps is not None else scale.steps
  seq_len = scale.music_seq_len if music else scale.seq_len
  return train_config(scale.model, dataset, scale=scale.name, model=model_config(scale, variant),
                      batch_size=scale.batch_size, seq_len=seq_len, crop=seq_len is not None and seq_len < spec.length,
                      steps=steps, epochs=None if steps is not None else scale.epochs,
                      eval_every=None if music else scale.eval_every,
                      eval_batch_size=scale.music_eval_batch if music else None,
                      mesh_seq=scale.music_mesh_seq if music else 1, ema_decay=scale.ema_decay, seed=scale.seed)


def train(scale: Scale, variant: str, dataset: str, out: str | os.PathLike, *, progress: bool = True) -> Run:
  """Trains `variant` on `dataset` in OUT/runs/DATASET/VARIANT and evaluates it on the test split.

  A finished run in that directory is reused (its logged test NLL is read back); an interrupted one resumes from
  its last checkpoint. Raises hrnn.checkpoint.CheckpointError when the directory holds a different run.
  """
  from hrnn.model import count_params
  from hrnn.summary import abstract_model
  from hrnn.train import train_and_evaluate

  config = run_config(scale, variant, dataset)
  workdir = Path(out) / "runs" / dataset / variant
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
  from hrnn.checkpoint import read_config

  metrics = workdir / "metrics.jsonl"
  if not metrics.exists() or read_config(workdir) != config:
    return None
  total = config.steps or config.epochs * data.num_batches(
      data.load_split(config.dataset, "train", root=config.data_root), config.batch_size)
  for line in metrics.read_text().splitlines():
    record = json.loads(line)
    if record.get("split") == "test" and record["step"] == total:
      return record["nll_bits"]
  return None


@dataclasses.dataclass(frozen=True)
class Samples:
  """Generated audio: `paths` (16 kHz WAV), each sample's log-likelihood under the model (nats), and the
  generation throughput in tokens per second."""

  directory: Path
  paths: tuple[Path, ...]
  log_likelihoods: tuple[float, ...]
  tokens_per_s: float


def generate(run: Run, out: str | os.PathLike, name: str, n: int, n_tokens: int | None = None, *,
             batch_size: int | None = None, seed: int = 0, likelihoods: bool = False,
             progress: bool = True) -> Samples:
  """Samples `n` clips of `n_tokens` (default: the dataset's example length) from the run's EMA model into
  OUT/samples/NAME/sample_NNNNN.wav, `batch_size` streams at a time (default: the training batch, as the paper
  measured throughput); batch b uses seed `seed + b`. With `likelihoods`, each sample's log-likelihood under the
  model is computed (one parallel forward pass per batch), for SaShiMi's likelihood band; else they are NaN.

  Throughput counts the tokens of every batch after the first (which compiles) over their wall time; with a single
  batch it includes compilation. Reused when OUT/samples/NAME already holds the same request from the same run.
  """
  from hrnn.sampling import generate as sample

  quantization = data.get_spec(run.config.dataset).quantization
  n_tokens = n_tokens or data.get_spec(run.config.dataset).length
  batch_size = min(batch_size or run.config.batch_size, n)
  directory = Path(out) / "samples" / name
  request = {"run": str(run.workdir.resolve()), "n": n, "n_tokens": n_tokens, "batch_size": batch_size,
             "seed": seed, "likelihoods": likelihoods}
  record = directory / "samples.json"
  if record.exists() and json.loads(record.read_text())["request"] == request:
    saved = json.loads(record.read_text())
    return Samples(directory, tuple(directory / p for p in saved["files"]), tuple(saved["log_likelihoods"]),
                   saved["tokens_per_s"])
  directory.mkdir(parents=True, exist_ok=True)
  model = run.load()
  paths, log_likelihoods = [], []
  timed_tokens, timed_seconds = 0, 0.0
  for b, first in enumerate(range(0, n, batch_size)):
    start = time.perf_counter()
    tokens = sample(model, min(batch_size, n - first), n_tokens, seed=seed + b, batch_size=batch_size,
                    progress=progress)
    seconds = time.perf_counter() - start
    if b > 0 or n <= batch_size:
      timed_tokens, timed_seconds = timed_tokens + tokens.size, timed_seconds + seconds
    for i, row in enumerate(tokens):
      paths.append(data.write_wav(directory / f"sample_{first + i:05d}.wav", data.dequantize(row, quantization)))
    log_likelihoods += list(sequence_log_likelihoods(model, tokens)) if likelihoods else [math.nan] * len(tokens)
  tokens_per_s = timed_tokens / timed_seconds
  record.write_text(json.dumps({"request": request, "files": [p.name for p in paths],
                                "log_likelihoods": log_likelihoods, "tokens_per_s": tokens_per_s}, indent=1))
  return Samples(directory, tuple(paths), tuple(log_likelihoods), tokens_per_s)


def sc09_samples(run: Run, scale: Scale, out: str | os.PathLike, *, seed: int = 0) -> Samples:
  """The scale's SC09 sample set of a run (`scale.n_samples` clips of `scale.sample_tokens`, with likelihoods when
  the scale scores a likelihood band) in OUT/samples/DATASET-VARIANT: the set every notebook scores."""
  return generate(run, out, f"{run.config.dataset}-{run.variant}", scale.n_samples, scale.sample_tokens, seed=seed,
                  likelihoods=scale.likelihood_band)


def sequence_log_likelihoods(model, tokens) -> list[float]:
  """log p(x) = sum_t log p(x_t | x_<t) in nats of each row of int tokens [B, T] (one parallel forward pass)."""
  import jax.numpy as jnp

  return [float(x) for x in _row_log_likelihoods()(model, jnp.asarray(tokens, jnp.int32))]


@functools.cache
def _row_log_likelihoods():
  """The jitted function of `sequence_log_likelihoods`, made once: a function jitted anew on every call would be
  compiled again for every batch. Built on first use, so that importing this module does not import JAX."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  @nnx.jit
  def per_row(model, tokens):
    logp = jax.nn.log_softmax(model(tokens).astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0].sum(axis=-1)

  return per_row


def unigram_entropy(dataset: str, split: str = "test") -> float:
  """Entropy in bits of the split's token histogram (real tokens only): the NLL of the best model that ignores
  the past. A model below it has learned temporal structure; 8 bits is uniform guessing."""
  import numpy as np

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
  from hrnn.metrics import TrainSettings, load_classifier, train_classifier

  if path is not None:
    return load_classifier(path)
  saved = Path(out) / "classifier" / f"{scale.sc09}.pt"
  if saved.exists():
    return load_classifier(saved)
  settings = TrainSettings(epochs=scale.classifier_epochs, seed=scale.seed)
  model, info = train_classifier(scale.sc09, scale.classifier_size, settings=settings, out=saved)
  return model, {**info, "source": f"hrnn classifier {saved.name}"}


def quality(samples: Samples, scale: Scale, classifier) -> dict[str, dict[str, float]]:
  """SaShiMi's SC09 protocol: {"samples", "train", "test"} -> {"fid", "is", "mis", "am", ...}, every set scored
  against the training split of `scale.sc09` (hrnn.metrics.score). With `scale.likelihood_band` only the 40%..95%
  band of the samples ranked by likelihood is scored."""
  from hrnn.metrics import score

  likelihoods = list(samples.log_likelihoods) if scale.likelihood_band else None
  result = score(samples.directory, reference=scale.sc09, classifier=classifier, likelihoods=likelihoods)
  return result["rows"]


def predicted_digits(paths, classifier) -> list[int]:
  """The classifier's most likely digit (0..9 = zero..nine) for each audio file."""
  from hrnn.metrics import classifier_outputs, clip_features

  features, _ = clip_features(list(paths), desc="classifying")
  _, probs = classifier_outputs(classifier, features)
  return [int(p.argmax()) for p in probs]
