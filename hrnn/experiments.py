"""The paper's experiments at a run scale (`hrnn.scales`): what the notebooks call, so that they stay thin.

  prepare_data(scale, *names)                  build (embedded) or download (real) datasets; no-op when present
  train(scale, variant, dataset, out) -> Run   a model trained in OUT/runs/DATASET/VARIANT (finished runs reused,
                                               interrupted ones resumed), with its curves and test NLL
  generate(run, out, name, n, ...) -> Samples  WAV files in OUT/samples/NAME with their likelihoods and throughput
                                               (reused when the same run already generated them)
  digit_classifier(scale, out)                 the SC09 digit classifier, trained once per OUT (or a given file)
  quality(samples, scale, classifier)          FID / IS / mIS / AM of the samples and of the real train/test splits
  predicted_digits(paths, classifier)          the classifier's digit for each clip (the listening panel)

Runs, samples and the classifier are shared between notebooks through OUT: the baseline trained by one notebook is
the baseline of the next.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from hrnn import data
from hrnn.config import TrainConfig, train_config
from hrnn.scales import Scale, model_config


def prepare_data(scale: Scale, *names: str) -> None:
  """Makes each dataset ready under the data root ($HRNN_DATA or ~/.cache/hrnn/data): embedded ones are built at
  `scale.data_size`, real ones downloaded from the Hugging Face hub."""
  for name in names:
    data.prepare(name, size=scale.data_size, seed=0)


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
  """The TrainConfig of `variant` of the scale's model trained on `dataset` at the scale's lengths."""
  music = data.get_spec(dataset).layout != "sc09"
  steps = scale.music_steps if music and scale.music_steps is not None else scale.steps
  return train_config(scale.model, dataset, scale=scale.name, model=model_config(scale, variant),
                      batch_size=scale.batch_size, seq_len=scale.music_seq_len if music else scale.seq_len,
                      steps=steps, epochs=None if steps is not None else scale.epochs, eval_every=scale.eval_every,
                      seed=scale.seed)


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
  result = train_and_evaluate(config, workdir, progress=progress)
  if result.interrupted:
    raise KeyboardInterrupt(f"training of {workdir} was interrupted at step {result.step}; run again to resume")
  return Run(variant, config, workdir, result.test_nll, count_params(abstract_model(config.model)))


@dataclasses.dataclass(frozen=True)
class Samples:
  """Generated audio: `paths` (16 kHz WAV), per-sample log-likelihoods in nats, and generation throughput."""

  directory: Path
  paths: tuple[Path, ...]
  log_likelihoods: tuple[float, ...]
  tokens_per_s: float


def generate(run: Run, out: str | os.PathLike, name: str, n: int, n_tokens: int | None = None, *,
             batch_size: int | None = None, seed: int = 0, progress: bool = True) -> Samples:
  """Samples `n` clips of `n_tokens` (default: the dataset's example length) from the run's EMA model into
  OUT/samples/NAME, `batch_size` streams at a time (default: the training batch, as the paper's throughput).

  The throughput counts every generated token over the wall time after the first batch (which compiles). Reused
  when OUT/samples/NAME already holds the same request from the same run.
  """
  from hrnn.sampling import generate as sample

  spec = data.get_spec(run.config.dataset)
  n_tokens = n_tokens or spec.length
  batch_size = min(batch_size or run.config.batch_size, n)
  directory = Path(out) / "samples" / name
  request = {"run": str(run.workdir.resolve()), "n": n, "n_tokens": n_tokens, "batch_size": batch_size,
             "seed": seed}
  record = directory / "samples.json"
  if record.exists():
    saved = json.loads(record.read_text())
    if saved["request"] == request:
      return Samples(directory, tuple(directory / p for p in saved["files"]), tuple(saved["log_likelihoods"]),
                     saved["tokens_per_s"])
  directory.mkdir(parents=True, exist_ok=True)
  model = run.load()
  paths, log_likelihoods, timed_tokens, timed_seconds = [], [], 0, 0.0
  for first in range(0, n, batch_size):
    count = min(batch_size, n - first)
    start = time.perf_counter()
    batch = sample(model, count, n_tokens, seed=seed, first_index=first, out_dir=directory,
                   quantization=spec.quantization, progress=progress)
    if first:
      timed_tokens, timed_seconds = timed_tokens + count * n_tokens, timed_seconds + time.perf_counter() - start
    paths += batch.paths
    log_likelihoods += batch.log_likelihoods
  tokens_per_s = timed_tokens / timed_seconds if timed_tokens else n * n_tokens / (time.perf_counter() - start)
  record.write_text(json.dumps({"request": request, "files": [Path(p).name for p in paths],
                                "log_likelihoods": [float(x) for x in log_likelihoods],
                                "tokens_per_s": tokens_per_s}, indent=1))
  return Samples(directory, tuple(map(Path, paths)), tuple(map(float, log_likelihoods)), tokens_per_s)


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
