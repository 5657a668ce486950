"""Learning curves of sample quality: NLL, IS and FID of a training run's checkpoints, and its EMA weights kept.

A long run (e.g. the `workstation` scale's baseline, `hrnn.paper.experiments.train`) that keeps its checkpoints
becomes a learning curve: at each chosen checkpoint the EMA weights generate `n` one-second clips, which the kit's digit
classifier scores with SaShiMi's estimators (IS, FID against the training split); the validation NLL is the one
the run logged at that step. The training time to each step is the sum of the logged step times (compilation and
evaluations excluded). Each scored row records which classifier scored it (its fingerprint): scores of two
classifiers are never reused for one another nor paired in a comparison. Each row also records the run that trained
its checkpoint (`run_fingerprint`): a table is never continued with the checkpoints of another run under the same name.

  curve(workdir, out, classifier, ...)   OUT/tables/learning_curve_NAME.{csv,md,json}, OUT/plots/learning_curve_NAME.png
  export_ema(workdir, dest, step)        DEST: a run directory holding only the EMA weights of one checkpoint (a few
                                         MB), which `hrnn sample --checkpoint DEST` and `checkpoint.load_model` read
  extrapolate(curve, "IS", 3, ...)       a least-squares line of IS against log(training tokens), extended to IS 3,
                                         with the range over which its one-standard-error band reaches it
  keep_samples(samples_dir, dest, ...)   a few of a checkpoint's WAVs beside the README, each with its predicted digit
  goal_text(table, workdir)              IS 3 reached (measured: where, after how long, how steadily) or the trend
                                         extended to it
  write_section(out, table, name, ...)   OUT/curves/NAME.md: one curve's table, trend, clips and weights in prose
  compare(tables, "IS")                  the first curve (baseline) minus each other one, paired at the checkpoints
                                         both scored with one classifier in the last half of their common training,
                                         judged against the pairs' standard error (Table 2's ordering at equal
                                         training)
  scorers(table)                         step -> fingerprint of the classifier that scored the row
  run_fingerprint(workdir)               which run trained the checkpoints: its first logged step, hashed
  write_readme(out)                      OUT/README.md: the comparison, then every curve's section (and a link to
                                         OUT/earlier, the curves of runs that cannot be compared with these)
  listen_to_exported(out, n, samples)    clips of every model exported under OUT/models and OUT/earlier/models, each
                                         labelled with the digit OUT's classifier hears (the notebooks' listening on
                                         a fresh clone)

Run as `python -m hrnn.paper.curves WORKDIR --out results/workstation` (--help for the options).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import statistics
import os
import shutil
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from flax import nnx

from hrnn import data
from hrnn.config import VARIANTS
from hrnn.errors import HrnnError
from hrnn.model import sampling
from hrnn.paper.results import dataset_label, markdown_table, save_plot, save_table
from hrnn.train.checkpoint import CONFIG_FILE, Checkpoints, latest_step, load_model, read_config
from hrnn.train.loop import checkpoint_meta, read_metrics

IS_GOAL = 3.0  # IS at which samples of the digit classifier's ten classes count as recognisable digits
SCORE_COLUMNS = {"is": "IS", "fid": "FID", "mis": "mIS", "am": "AM"}  # set_scores' keys -> the table's columns
KEEP_SAMPLES = 4  # clips of the newest scored checkpoint kept beside the README (32 KB each)
COMPARE_K = 2.0  # two curves differ when their mean paired difference exceeds this many standard errors
MIN_PAIRS = 3  # paired checkpoints below which two curves are not ordered (their noise is barely known)
CLASSIFIER_COLUMN = "classifier"  # per scored checkpoint: the fingerprint of the classifier that scored it
UNRECORDED = "unrecorded"  # the classifier of rows scored before the column existed (all of them by one classifier)
RUN_COLUMN = "run"  # per row: the fingerprint of the run that trained its checkpoint (`run_fingerprint`)
SAMPLES_FILE = "samples.json"
EARLIER = "earlier"  # OUT/earlier: an OUT of its own holding curves of runs that cannot be compared with OUT's
INTRO_FILE = "intro.md"  # OUT/intro.md: a paragraph placed under the README's title (what OUT's runs are)


def _metrics():
  """hrnn.metrics, imported here only: it needs torch (the `metrics` extra), which only the scoring uses; the NLL
  columns, the fit and the README work without it."""
  import hrnn.metrics.protocol  # noqa: F401  (loads hrnn.metrics with it)
  return hrnn.metrics


def train_seconds(workdir: str | os.PathLike) -> dict[int, float]:
  """Step -> seconds of training up to that logged step: the sum over logged intervals of their steps divided by
  their measured steps per second (tokens_per_s / tokens_per_step); the compiling first step counts as the
  interval's mean."""
  step_tokens = tokens_per_step(read_config(workdir))

  elapsed, previous, total = {}, 0, 0.0
  for record in read_metrics(workdir):
    if "split" in record:
      continue
    rate = record.get("tokens_per_s")
    if rate:
      total += (record["step"] - previous) * step_tokens / rate
    previous = record["step"]
    elapsed[record["step"]] = total
  return elapsed


def seconds_at(elapsed: dict[int, float], step: int) -> float:
  """Training seconds to `step` from `train_seconds`' logged steps (step 0 at 0 s): interpolated between the logged
  steps around it, or continued at the last logged interval's rate past the last (a checkpoint written between two
  log lines, as on a stop); NaN with nothing logged."""
  points = {0: 0.0} | elapsed
  if step in points:
    return points[step]
  below, above = [s for s in sorted(points) if s < step], [s for s in sorted(points) if s > step]
  if above:
    lo, hi = below[-1], above[0]
  elif len(below) >= 2:
    lo, hi = below[-2], below[-1]
  else:
    return math.nan
  return points[lo] + (step - lo) * (points[hi] - points[lo]) / (hi - lo)


def logged_train_nll(workdir: str | os.PathLike, steps: list[int]) -> dict[int, float]:
  """Step -> mean logged training loss (bits, batch means) over the logged steps since the previous entry of
  `steps` (ascending): the curve's NLL where no validation was logged."""
  records = [r for r in read_metrics(workdir) if "split" not in r and r.get("loss_bits") is not None]
  found, previous = {}, 0
  for step in steps:
    losses = [r["loss_bits"] for r in records if previous < r["step"] <= step]
    if losses:
      found[step] = sum(losses) / len(losses)
    previous = step
  return found


def logged_nll(workdir: str | os.PathLike, split: str = "valid") -> dict[int, float]:
  """Step -> NLL (bits) of the EMA weights that the run logged for `split`."""
  found = {}
  for record in read_metrics(workdir):
    if record.get("split") == split and record.get("nll_bits") is not None:
      found[record["step"]] = record["nll_bits"]
  return found


def check_same_dataset(workdir: str | os.PathLike, steps_per_epoch: int) -> None:
  """Raises hrnn.data.DataError when the run in `workdir` logged another number of steps per epoch (step / epoch
  of its log lines) than `steps_per_epoch`, that of the dataset now on disk: a copy of another size (one data root
  holds one copy), whose FID reference and epochs would not be those of the run's data."""
  config = read_config(workdir)
  logged = {round(r["step"] / r["epoch"]) for r in read_metrics(workdir)
            if "split" not in r and r.get("epoch") and r.get("step")}
  if logged and logged != {steps_per_epoch}:
    raise data.DataError(
        f"{workdir} trained on {', '.join(map(str, sorted(logged)))} steps per epoch of {config.dataset}, but the copy "
        f"in the data root gives {steps_per_epoch} (batch {config.batch_size}): it is another size of the dataset. "
        f"Prepare the size the run used (`hrnn data prepare {config.dataset} --size ...`) or point HRNN_DATA at its "
        f"data root.")


def reference_outputs(dataset: str, classifier, root=None):
  """(features, probabilities) of the classifier on `dataset`'s train split: the FID reference, computed once."""
  metrics = _metrics()
  features, _, _ = metrics.split_features(dataset, "train", root)
  return metrics.classifier_outputs(classifier, features)


def samples_dir(out: str | os.PathLike, name: str, step: int) -> Path:
  """Where the clips scored for checkpoint `step` of curve `name` are generated: OUT/runs/curve_samples/NAME/STEP."""
  return Path(out) / "runs" / "curve_samples" / name / str(step)


def scorers(table: pd.DataFrame) -> dict[int, str]:
  """Step -> fingerprint of the classifier that scored that row's IS and FID (`UNRECORDED` for rows scored before
  the table recorded it); unscored rows are left out."""
  by = table.get(CLASSIFIER_COLUMN, pd.Series(UNRECORDED, index=table.index)).fillna(UNRECORDED)
  return {int(step): str(by[step]) for step in table.index[table["IS"].notna()]}


def run_fingerprint(workdir: str | os.PathLike) -> str | None:
  """12 hex digits of the SHA-256 of the run's first logged training step (step, loss, gradient norm, as logged):
  a resumed run keeps it, while another seed, model, dataset or machine's arithmetic changes the loss in its last
  bits, so two runs trained into one directory name are told apart. None before the first log line."""
  for record in read_metrics(workdir):
    if "split" not in record and record.get("loss_bits") is not None:
      first = {key: record.get(key) for key in ("step", "loss_bits", "grad_norm")}
      return hashlib.sha256(json.dumps(first, sort_keys=True).encode()).hexdigest()[:12]
  return None


def check_same_run(table: pd.DataFrame, run: str | None, workdir: str | os.PathLike,
                   table_path: str | os.PathLike) -> None:
  """Raises HrnnError when rows of `table` (a saved curve) record another run than `run`, the `run_fingerprint` of
  the run in `workdir`: its rows whose checkpoint is gone would be kept beside the new run's and read its log. Rows
  from before the column are not checked."""
  recorded = set(table.get(RUN_COLUMN, pd.Series(dtype=str)).dropna()) - {run}
  if run is not None and recorded:
    raise HrnnError(
        f"{table_path} is the curve of another run (run {', '.join(sorted(recorded))}) than the one in {workdir} "
        f"(run {run}): move the table (and its plots/, curves/, audio/, models/ files) away, or train into another "
        f"directory name.")


def checkpoint_scores(workdir, step: int, samples_dir: Path, n: int, classifier, reference, *,
                      seed: int = 0, batch_size: int = 16) -> dict[str, float]:
  """Generates `n` one-second clips from the EMA weights of checkpoint `step` into `samples_dir` and scores them
  (SaShiMi's FID, IS, mIS, AM against the train split's classifier outputs `reference`)."""
  metrics = _metrics()
  model, config = load_model(workdir, step=step)
  spec = data.get_spec(config.dataset)
  samples_dir.mkdir(parents=True, exist_ok=True)
  paths = sampling.generate(model, n, spec.length, seed=seed, out_dir=samples_dir, quantization=spec.quantization,
                            batch_size=min(batch_size, n), progress=False)
  features, _ = metrics.clip_features(paths, desc=f"scoring step {step}")
  scores = metrics.protocol.set_scores(*reference, *metrics.classifier_outputs(classifier, features))
  return {k: float(v) for k, v in scores.items()}


def curve(workdir: str | os.PathLike, out: str | os.PathLike, classifier, *, name: str | None = None,
          steps: list[int] | None = None, n: int = 64, seed: int = 0, root=None, label: str = ""):
  """The learning curve of the run in `workdir`: one row per chosen checkpoint (default: every one), saved as
  OUT/tables/learning_curve_NAME (rewritten after each scored checkpoint) and plotted as
  OUT/plots/learning_curve_NAME.png; rows already in the table are reused and kept (the curve grows as the run
  does). Returns the table (a pandas DataFrame indexed by step).

  classifier: the digit classifier (a ResNeXt); n: generated clips per checkpoint (0: the NLL columns only, IS
  and FID left empty).
  """
  workdir, out = Path(workdir), Path(out)
  config = read_config(workdir)
  name = name or f"{config.dataset}-{workdir.name}"
  checkpoints = Checkpoints(workdir, keep=10 ** 6)
  try:
    available = checkpoints.all_steps()
  finally:
    checkpoints.close()
  table_path = out / "tables" / f"learning_curve_{name}.csv"
  done = read_curve(table_path) if table_path.exists() else None
  run = run_fingerprint(workdir)
  if done is not None:
    check_same_run(done, run, workdir, table_path)
  steps = sorted(set(steps or available) & set(available) | (set(done.index) if done is not None else set()))
  elapsed, nll, train_nll = train_seconds(workdir), logged_nll(workdir), logged_train_nll(workdir, steps)
  steps_per_epoch = data.num_batches(data.load_split(config.dataset, "train", root=root), config.batch_size)
  check_same_dataset(workdir, steps_per_epoch)

  def save(rows):
    table = pd.DataFrame(rows).set_index("step")
    if done is not None:  # rows of the table not reached yet
      table = pd.concat([table, done.drop(index=table.index, errors="ignore")]).sort_index()
    save_table(table, out, f"learning_curve_{name}", preset=config.preset, datasets=config.dataset,
               notes=f"{label}model preset {config.preset}, batch {config.batch_size} x {config.seq_len} tokens, "
                     f"EMA {config.ema_decay}; IS / FID (SaShiMi's estimators, the kit's classifier) of {n} samples "
                     f"of the EMA weights per checkpoint; train hours: logged step times (compilation and "
                     f"evaluation excluded)")
    return table

  reference = None
  scored_by = _metrics().classifier_fingerprint(classifier) if n else None
  done_by = scorers(done) if done is not None else {}
  rows = []
  for step in steps:
    # Scores already in the table are reused when the same classifier scored as many clips (or when the checkpoint
    # is gone); the columns read from the training log are always recomputed.
    reuse = done is not None and step in done.index and (
        (int(done.loc[step, "samples"]) == n and done_by.get(step) == scored_by) or step not in available)
    if reuse:
      scores = {key: done.loc[step, column] for key, column in SCORE_COLUMNS.items()}
    elif n == 0:
      scores = dict.fromkeys(SCORE_COLUMNS, math.nan)
    else:
      if reference is None:
        reference = reference_outputs(config.dataset, classifier, root)
      scores = checkpoint_scores(workdir, step, samples_dir(out, name, step), n, classifier, reference, seed=seed)
    rows.append({"step": step, "epoch": step / steps_per_epoch, "train hours": seconds_at(elapsed, step) / 3600,
                 "train NLL (bits)": train_nll.get(step, math.nan), "valid NLL (bits)": nll.get(step, math.nan),
                 **{column: scores[key] for key, column in SCORE_COLUMNS.items()},
                 "samples": int(done.loc[step, "samples"]) if reuse else n,
                 CLASSIFIER_COLUMN: done_by.get(step) if reuse else scored_by,
                 RUN_COLUMN: done.loc[step].get(RUN_COLUMN, math.nan) if step not in available else run})
    if not reuse:
      save(rows)  # after every scored checkpoint, so that an interrupted run keeps what it scored
  table = save(rows)
  plot(table, out, name, f"{dataset_label(config.dataset)}: model {config.preset}, {workdir.name}",
       is_trend(table, workdir))
  return table


@dataclasses.dataclass(frozen=True)
class LineFit:
  """The least-squares line y = mean_y + slope (x - mean_x) through n points (x not all equal), with what its
  standard error needs: s, the residual standard deviation (n - 2 degrees of freedom), and sxx = sum (x - mean_x)^2.
  The fitted mean at x then has standard error se(x) = s sqrt(1/n + (x - mean_x)^2 / sxx), the slope
  s / sqrt(sxx)."""
  n: int
  mean_x: float
  mean_y: float
  slope: float
  s: float
  sxx: float

  def __call__(self, x: float) -> float:
    return self.mean_y + self.slope * (x - self.mean_x)

  def se(self, x: float) -> float:
    return self.s * math.sqrt(1 / self.n + (x - self.mean_x) ** 2 / self.sxx)

  @property
  def slope_se(self) -> float:
    return self.s / math.sqrt(self.sxx)


def fit_line(x, y) -> LineFit:
  """Ordinary least squares of y on x (at least 3 points, so that the residuals have a spread)."""
  x, y = [float(v) for v in x], [float(v) for v in y]
  if len(x) != len(y) or len(x) < 3:
    raise ValueError(f"a line fit needs at least 3 (x, y) pairs, got {len(x)} x and {len(y)} y")
  n = len(x)
  mean_x, mean_y = sum(x) / n, sum(y) / n
  sxx = sum((a - mean_x) ** 2 for a in x)
  if sxx == 0:
    raise ValueError("a line fit needs at least two distinct x values")
  slope = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y)) / sxx
  residuals = sum((b - mean_y - slope * (a - mean_x)) ** 2 for a, b in zip(x, y))
  return LineFit(n, mean_x, mean_y, slope, math.sqrt(residuals / (n - 2)), sxx)


def crossing(fit: LineFit, target: float, k: float = 1.0) -> tuple[float, float, float] | None:
  """(x, low, high): where the line reaches `target`, and the range of x over which the band line ± k se(x)
  contains `target` (Fieller's interval, which is asymmetric as the band widens away from the data); None for a
  flat line. With u = x - mean_x and d = target - mean_y the band contains the target where
      (slope u - d)^2 <= k^2 s^2 (1/n + u^2 / sxx)   <=>   A u^2 - 2 slope d u + C <= 0,
      A = slope^2 - k^2 s^2 / sxx,   C = d^2 - k^2 s^2 / n.
  A > 0 (the slope more than k standard errors from zero): a bounded interval between the two roots. A <= 0: the
  data bound only the near end; the far end is infinite (and the near one too when the quadratic has no root)."""
  if fit.slope == 0:
    return None
  d = target - fit.mean_y
  x = fit.mean_x + d / fit.slope
  a = fit.slope ** 2 - (k * fit.s) ** 2 / fit.sxx
  c = d ** 2 - (k * fit.s) ** 2 / fit.n
  disc = (fit.slope * d) ** 2 - a * c  # >= 0 whenever a > 0 (0 for a perfect fit, up to rounding)
  if a > 0:
    half = math.sqrt(max(disc, 0.0)) / a
    return x, fit.mean_x + fit.slope * d / a - half, fit.mean_x + fit.slope * d / a + half
  roots = sorted(fit.mean_x + (fit.slope * d + sign * math.sqrt(disc)) / a for sign in (-1, 1)) if disc >= 0 else None
  if x > fit.mean_x:
    return x, roots[1] if roots else -math.inf, math.inf
  return x, -math.inf, roots[0] if roots else math.inf


@dataclasses.dataclass(frozen=True)
class Extrapolation:
  """A curve's `column` fitted as a line against x = ln(training tokens) and extended to `target`: at `tokens`
  (central), within [low, high] tokens at one standard error (high may be infinite). Steps and hours follow from
  the run's tokens per step and its typical measured throughput."""
  column: str
  target: float
  steps: tuple[int, ...]
  fit: LineFit
  tokens_per_step: int
  tokens_per_second: float
  tokens: float
  low: float
  high: float

  def hours(self, tokens: float) -> float:
    return tokens / self.tokens_per_second / 3600


def extrapolate(table, column: str, target: float, tokens_per_step: int, tokens_per_second: float,
                k: float = 1.0) -> Extrapolation | None:
  """Fits `column` of the curve (every scored step) as a + b ln(step * tokens_per_step) by least squares and
  extends the line to `target` (`crossing`, band of k standard errors). None with fewer than 3 scored points or
  when the line moves away from the target (the curve is not heading there)."""
  points = table[[column]].dropna()
  points = points[points.index > 0]
  if len(points) < 3:
    return None
  steps = [int(s) for s in points.index]
  fit = fit_line([math.log(s * tokens_per_step) for s in steps], points[column])
  found = crossing(fit, target, k)
  if found is None or (target - fit(math.log(steps[-1] * tokens_per_step))) * fit.slope < 0:
    return None
  x, low, high = found
  return Extrapolation(column, target, tuple(steps), fit, tokens_per_step, tokens_per_second, math.exp(x),
                       math.exp(low) if low > -math.inf else 0.0, math.exp(high) if high < math.inf else math.inf)


def tokens_per_step(config) -> int:
  """Training tokens one optimiser step consumes: batch (all micro-batches together) x crop length."""
  return config.batch_size * (config.seq_len or data.get_spec(config.dataset).length)


def logged_throughput(workdir: str | os.PathLike) -> float:
  """The median training throughput (tokens/s) the run logged: its typical rate on this machine, robust to the
  stretches when other jobs shared the CPU."""
  rates = [r["tokens_per_s"] for r in read_metrics(workdir) if "split" not in r and r.get("tokens_per_s")]
  return statistics.median(rates) if rates else math.nan


def is_trend(table, workdir: str | os.PathLike) -> Extrapolation | None:
  """The curve's IS extended to IS_GOAL (`extrapolate`, one standard error) with the run's tokens per step and its
  median logged throughput."""
  return extrapolate(table, "IS", IS_GOAL, tokens_per_step(read_config(workdir)), logged_throughput(workdir))


def plot(table, out, name: str, title: str, trend: Extrapolation | None = None):
  """NLL and FID against training steps; IS against training tokens (log axis) with the fitted trend and its
  one-standard-error band extended towards IS_GOAL (at most 1,000 times the trained tokens)."""
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), layout="constrained")
  axes[0].plot(table.index, table["train NLL (bits)"], "o-", label="train (logged batch means)")
  axes[0].plot(table.index, table["valid NLL (bits)"], "s", label="valid (EMA weights)")
  axes[0].legend(fontsize=8)
  axes[2].plot(table.index, table["FID"], "^-")
  for ax, label in zip(axes, ("NLL (bits per sample)", "IS", "FID")):
    ax.set(xlabel="training step", title=label)
    ax.grid(alpha=0.3)
  scored = table["IS"].dropna()
  if trend is not None:
    step_tokens = trend.tokens_per_step
    axes[1].plot(scored.index * step_tokens, scored, "s", label="scored checkpoints")
    last = scored.index[-1] * step_tokens
    end = min(max(trend.tokens, trend.high if trend.high < math.inf else 0.0) * 1.5, last * 1e3)
    x = np.geomspace(scored.index[0] * step_tokens, max(end, last), 100)
    line = np.array([trend.fit(math.log(v)) for v in x])
    se = np.array([trend.fit.se(math.log(v)) for v in x])
    axes[1].plot(x, line, "-", color="C1", label=f"fit: IS = a + {trend.fit.slope:.3f} ln(tokens)")
    axes[1].fill_between(x, line - se, line + se, color="C1", alpha=0.2, label="one standard error")
    axes[1].set(xscale="log", xlabel="training tokens")
  else:
    axes[1].plot(scored.index, scored, "s-")
  axes[1].axhline(IS_GOAL, color="gray", ls="--", label=f"IS {IS_GOAL:g}: recognisable digits")
  axes[1].legend(fontsize=7)
  axes[2].set_yscale("log")
  fig.suptitle(f"Learning curve of sample quality: {title}", fontsize=10)
  path = save_plot(fig, out, f"learning_curve_{name}")
  plt.close(fig)
  return path


def export_ema(workdir: str | os.PathLike, dest: str | os.PathLike, step: int | None = None) -> Path:
  """Copies the EMA weights of checkpoint `step` (default: the newest) of the run in `workdir` into DEST, a run
  directory with only those weights and the run's config (no optimiser state: a fraction of the size), which
  `hrnn sample --checkpoint DEST` and `hrnn.train.checkpoint.load_model(DEST)` read. Replaces an older export in
  DEST."""
  model, config = load_model(workdir, step=step)
  checkpoints = Checkpoints(workdir)
  try:
    step = checkpoints.step(step)
  finally:
    checkpoints.close()
  dest = Path(dest)
  if (dest / "checkpoints").exists():
    shutil.rmtree(dest / "checkpoints")
  dest.mkdir(parents=True, exist_ok=True)
  shutil.copy(Path(workdir) / CONFIG_FILE, dest / CONFIG_FILE)
  steps_per_epoch = data.num_batches(data.load_split(config.dataset, "train", root=config.data_root),
                                     config.batch_size)
  exported = Checkpoints(dest, keep=1)
  try:
    exported.save(step, {"ema": nnx.state(model, nnx.Param)}, checkpoint_meta(config, step, steps_per_epoch))
    exported.wait()
  finally:
    exported.close()
  return dest


def keep_samples(samples_dir: str | os.PathLike, dest: str | os.PathLike, classifier, k: int = 4) -> list[dict]:
  """Copies the first `k` WAVs of `samples_dir` (one scored checkpoint's clips) into DEST, replacing the WAVs there,
  and writes DEST/samples.json: per clip the classifier's predicted digit and its probability, and the clip's RMS
  (full-scale noise is about 0.3 and more). Returns those records."""
  metrics = _metrics()
  files = metrics.sample_files(samples_dir)[:k]
  dest = Path(dest)
  dest.mkdir(parents=True, exist_ok=True)
  for old in dest.glob("*.wav"):
    old.unlink()
  waves, _ = metrics.read_clips(files)
  _, probs = metrics.classifier_outputs(classifier, metrics.log_mel(waves))
  records = []
  for path, wave, p in zip(files, waves, probs):
    shutil.copy(path, dest / path.name)
    records.append({"file": path.name, "digit": data.DIGITS[int(p.argmax())], "probability": float(p.max()),
                    "rms": float(np.sqrt(np.mean(np.square(wave))))})
  (dest / SAMPLES_FILE).write_text(json.dumps({"source": str(samples_dir), "samples": records}, indent=1) + "\n")
  return records


def exported_models(out: str | os.PathLike) -> dict[str, Path]:
  """The EMA weights exported under OUT/models (`export_ema`), by curve name, in `read_curves`' order, then those of
  OUT/earlier/models named `earlier/NAME`: what a fresh clone can sample from with no training. {} when OUT has none
  (an installed hrnn has no results/ folder)."""
  found = {}
  for prefix, models in (("", Path(out) / "models"), (f"{EARLIER}/", Path(out) / EARLIER / "models")):
    names = sorted((p.name for p in models.iterdir() if (p / CONFIG_FILE).exists()) if models.is_dir() else [],
                   key=_variant_order)
    found |= {prefix + name: models / name for name in names}
  return found


def listen_to_exported(out: str | os.PathLike, n: int, samples: str | os.PathLike, *, seconds: float = 1.0,
                       seed: int = 0) -> list[tuple[str, Path]]:
  """Generates `n` clips of `seconds` from each model of `exported_models(OUT)` into SAMPLES/NAME and labels each
  with the model, its checkpoint step and the digit OUT's classifier (OUT/classifier/DATASET.pt, the curves'
  classifier, committed beside the weights) hears in it; a model with no classifier for its dataset (music,
  your own audio, curves scored with --n 0) is labelled without a digit. Rows for
  `hrnn.paper.results.listening_rows`; [] when OUT exports no model."""
  rows, classifiers = [], {}  # each dataset's classifier loaded once
  for name, path in exported_models(out).items():
    model, config = load_model(path)
    paths = sampling.generate(model, n, round(seconds * sampling.SAMPLE_RATE), seed=seed,
                              out_dir=Path(samples) / name, quantization=data.get_spec(config.dataset).quantization,
                              progress=False)
    labels = [f"{name} (EMA weights of step {latest_step(path):,}), sample {i}" for i in range(len(paths))]
    classifier_file = Path(out) / "classifier" / f"{config.dataset}.pt"
    if classifier_file.exists():
      metrics = _metrics()
      if config.dataset not in classifiers:
        classifiers[config.dataset], _ = metrics.load_classifier(classifier_file)
      classifier = classifiers[config.dataset]
      labels = [f"{label}: the classifier hears '{data.DIGITS[digit]}' (p = {p:.2f})"
                for label, (digit, p) in zip(labels, metrics.predicted_digits(paths, classifier))]
    rows += zip(labels, paths)
  return rows


def _tokens(count: float) -> str:
  """A token count for prose: '320,000', '256 million', '3.1 billion', '4.2e+15'."""
  if count < 1e6:
    return f"{count:,.0f}"
  if count < 1e9:
    return f"{count / 1e6:,.0f} million"
  return f"{count / 1e9:,.1f} billion" if count < 1e12 else f"{count:.1e}"


def _steps(count: float) -> str:
  return f"{count:,.0f}" if count < 1e9 else f"{count:.1e}"


def _hours(hours: float) -> str:
  return f"{hours:,.1f}" if hours < 100 else f"{hours:,.0f}" if hours < 1e6 else f"{hours:.1e}"


def trend_text(trend: Extrapolation | None, table, planned_steps: int | None = None) -> str:
  """The README's paragraph on the IS trend: the fitted line, where it reaches the target and its uncertainty in
  tokens, steps and hours, whether the run's `planned_steps` get there, and the caveat; generated from
  `extrapolate`'s result, never typed."""
  if table["IS"].isna().all():
    return "No checkpoint has been scored with the classifier yet (IS, FID empty)."
  if trend is None:
    return (f"The IS curve ({table['IS'].notna().sum()} scored checkpoint(s)) does not head towards IS {IS_GOAL:g} "
            f"(fewer than 3 points, or a falling trend): no extrapolation.")
  fit, per_step = trend.fit, trend.tokens_per_step
  steps = ", ".join(f"{s:,}" for s in trend.steps)
  lines = [
      f"**Extrapolation (a fitted trend, not a measurement).** Model: IS = a + b ln(training tokens), ordinary least "
      f"squares over the {fit.n} scored checkpoints (steps {steps}; {per_step:,} tokens per step). Fit: "
      f"b = {fit.slope:.3f} ± {fit.slope_se:.3f} per e-fold of tokens ({fit.slope * math.log(10):.2f} per tenfold), "
      f"IS {fit.mean_y:.2f} at the geometric-mean {_tokens(math.exp(fit.mean_x))} tokens, residual standard "
      f"deviation {fit.s:.3f}.",
  ]
  if trend.high < math.inf:
    hours = trend.hours(trend.tokens)
    lines.append(
        f"On this line IS {IS_GOAL:g} is reached after about {_tokens(trend.tokens)} training tokens: step "
        f"{_steps(trend.tokens / per_step)}, {_hours(hours)} hours of training at the run's median logged throughput "
        f"of "
        f"{trend.tokens_per_second:,.0f} tokens/s on this 2-core machine. Where the line's one-standard-error band "
        f"reaches IS {IS_GOAL:g} (Fieller's interval): between {_tokens(trend.low)} and {_tokens(trend.high)} tokens, "
        f"{_hours(trend.hours(trend.low))} to {_hours(trend.hours(trend.high))} hours.")
  else:
    lines.append(
        f"IS does not rise measurably over these checkpoints: the slope is within one standard error of zero, so the "
        f"line gives no estimate of when IS reaches {IS_GOAL:g}.")
    lines.append(
        f"At one standard error (Fieller's interval) the curve is consistent with IS {IS_GOAL:g} only beyond "
        f"{_tokens(trend.low)} tokens (step {_steps(trend.low / per_step)}, {_hours(trend.hours(trend.low))} hours at "
        f"the "
        f"run's median logged throughput of {trend.tokens_per_second:,.0f} tokens/s on this 2-core machine): a lower "
        f"bound under this model, with no upper bound." if trend.low > 0 else
        f"Its one-standard-error band contains IS {IS_GOAL:g} at every token count: the curve bounds neither end.")
  last = max(trend.steps) * per_step
  reach = trend.tokens if trend.high < math.inf else trend.low
  if planned_steps:
    planned = planned_steps * per_step
    verdict = "reach" if planned >= reach else "fall short of"
    lines.append(
        f"The run's planned {planned_steps:,} steps ({_tokens(planned)} tokens, {_hours(trend.hours(planned))} hours) "
        f"{verdict} {'that estimate' if trend.high < math.inf else 'that bound'}.")
  beyond = f" {math.log10(reach / last):.1f} decades of tokens{' or more' if trend.high == math.inf else ''}" \
      if reach > last else ""
  lines.append(
      f"Caveats: an extrapolation{beyond} beyond the last scored checkpoint ({_tokens(last)} tokens); IS is "
      f"bounded by 10 and the trend may bend either way (learning-rate schedule, over-fitting); each point scores "
      f"only {int(table['samples'].max())} clips, whose own sampling noise is part of the residuals.")
  return " ".join(lines)


def classifier_text(table, out: str | os.PathLike, config) -> str:
  """Which classifier scored which checkpoints (`scorers`, by fingerprint), and which one OUT/classifier holds now:
  a later rescoring with another one replaces a row only where the run still has the checkpoint."""
  steps_by: dict[str, list[int]] = {}
  for step, by in scorers(table).items():
    steps_by.setdefault(by, []).append(step)
  if not steps_by:
    return ""
  parts = [f"`{by}` ({len(steps)} checkpoints, steps {min(steps):,}-{max(steps):,})" if len(steps) > 1 else
           f"`{by}` (1 checkpoint, step {steps[0]:,})" for by, steps in steps_by.items()]
  text = f"Scored by classifier {', '.join(parts)}"
  if UNRECORDED in steps_by:
    text += f" (`{UNRECORDED}`: scored before the tables recorded the classifier's fingerprint)"
  path = Path(out) / "classifier" / f"{config.dataset}.pt"
  if path.exists():
    metrics = _metrics()
    text += f"; `classifier/{path.name}` here is `{metrics.classifier_fingerprint(metrics.load_classifier(path)[0])}`"
  return text + "."


def goal_text(table, workdir: str | os.PathLike) -> str:
  """The README's paragraph on IS_GOAL: once a scored checkpoint reaches it, what was measured (the first step at
  or above it, its training time, and how the later checkpoints score); before that, the fitted trend extended to
  it (`trend_text`)."""
  config = read_config(workdir)
  scored = table["IS"].dropna()
  reached = scored[scored >= IS_GOAL]
  if reached.empty:
    return trend_text(is_trend(table, workdir), table, config.steps)
  first = int(reached.index[0])
  after = scored.loc[first:]
  per_step, rate = tokens_per_step(config), logged_throughput(workdir)
  return (
      f"**Measured: IS {IS_GOAL:g} reached.** The first scored checkpoint at IS {IS_GOAL:g} or more is step {first:,} "
      f"(IS {scored[first]:.2f}; {_tokens(first * per_step)} training tokens, {table.loc[first, 'epoch']:.2f} epochs; "
      f"{table.loc[first, 'train hours']:.1f} hours of logged step times on this machine, which other jobs shared at "
      f"times; {_hours(first * per_step / rate / 3600)} hours at the run's median logged throughput of {rate:,.0f} "
      f"tokens/s). Of the {len(after)} checkpoints scored from there on, {int((after >= IS_GOAL).sum())} score IS "
      f"{IS_GOAL:g} or more: mean {after.mean():.2f}, lowest {after.min():.2f}, highest {after.max():.2f}. Each point "
      f"scores {int(table.loc[first:, 'samples'].min())} clips, so a single point moves by its sampling noise (the "
      f"spread between neighbouring checkpoints shows how much). IS here is SaShiMi's estimator (that of the "
      f"published SC09 IS): it normalises each class's column of classifier probabilities over the scored clips, so "
      f"it rewards classes that a few clips dominate rather than confident clips, and it is not the textbook IS, "
      f"which reads lower on weak samples (`hrnn metrics score` prints both for a folder of clips, beside the "
      f"dataset's own clips); the predicted digits' probabilities below show how confident the classifier is.")


def write_section(out: str | os.PathLike, table, name: str, workdir: str | os.PathLike,
                  export: str | os.PathLike | None = None, command: str | None = None) -> Path:
  """OUT/curves/NAME.md, the README's section on one curve: what the run is, its curve (plot and rounded table; the
  CSV keeps full precision), IS_GOAL reached or the IS trend extended to it (`goal_text`), the clips kept in
  OUT/audio/NAME (`keep_samples`), the exported weights and how to resume. Written while the run's directory is at
  hand (its config and log); `write_readme` assembles the sections of every curve."""
  out, workdir = Path(out), Path(workdir)
  config = read_config(workdir)
  last = table.index.max()
  shown = table.drop(columns=[CLASSIFIER_COLUMN, RUN_COLUMN], errors="ignore")  # named in classifier_text instead
  hours = table.loc[last, "train hours"]
  lines = [
      f"## {workdir.name}: model `{config.preset}` on {dataset_label(config.dataset)}\n\n",
      f"Regenerated by `{command or f'python -m hrnn.paper.curves {workdir} --out {out}'}`. The run: the "
      f"`{config.preset}` model preset "
      f"({workdir.name}), batch {config.batch_size} x {config.seq_len} tokens, AdamW at {config.learning_rate:g} "
      f"after {config.warmup_steps} warm-up steps, EMA {config.ema_decay}; {config.steps:,} steps planned, "
      f"{last:,} scored so far ({table.loc[last, 'epoch']:.2f} epochs, {hours:.2f} hours of logged training steps on "
      f"this machine, evaluations and compilation excluded).\n\n",
      f"![learning curve](plots/learning_curve_{name}.png)\n\n",
      markdown_table(["step", *shown.columns], [[step, *row] for step, row in zip(shown.index, shown.values)]),
      f"\nIS and FID: SaShiMi's estimators with the kit's digit classifier trained on the same dataset, "
      f"one-second samples of the EMA weights per checkpoint (`samples`; 0: not scored yet) (IS 1: every sample in "
      f"one class; {IS_GOAL:g}: recognisable digits; 10: ten confident classes). Full precision: "
      f"[tables/learning_curve_{name}.csv](tables/learning_curve_{name}.csv). {classifier_text(table, out, config)}"
      f"\n\n{goal_text(table, workdir)}\n",
  ]
  listing = out / "audio" / name / SAMPLES_FILE
  if listing.exists():
    kept = json.loads(listing.read_text())
    step = Path(kept["source"]).name
    lines.append(f"\n### Listen\n\nThe first {len(kept['samples'])} clips scored at step {step} (EMA weights, "
                 f"temperature 1), with the classifier's most probable digit; an RMS near 0.3 or more is full-scale "
                 f"noise (turn the volume down):\n\n")
    lines.append(markdown_table(
        ["clip", "predicted digit", "probability", "RMS"],
        [[f"[{r['file']}](audio/{name}/{r['file']})", r["digit"], r["probability"], r["rms"]]
         for r in kept["samples"]]))
  if export is not None:
    exported = Path(export)
    lines.append(f"\nThe EMA weights of step {last:,} are kept in `{exported}` (no optimiser state): "
                 f"`hrnn sample --checkpoint {exported} --n 8 --seconds 1 --out samples` generates from them on a "
                 f"fresh clone, with no training, and so does the last section of notebooks/00_quickstart.ipynb.\n")
  lines.append(f"\nResume the run where it lives (`{workdir}`, not committed): `hrnn train --workdir {workdir}` with "
               f"the same data root; then rerun the command above.\n")
  path = out / "curves" / f"{name}.md"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(lines))
  return path


def read_curve(path: str | os.PathLike) -> pd.DataFrame:
  """One saved curve (OUT/tables/learning_curve_NAME.csv), its fingerprints read as text (never as numbers)."""
  return pd.read_csv(path, index_col="step", dtype={CLASSIFIER_COLUMN: str, RUN_COLUMN: str})


def read_curves(out: str | os.PathLike) -> dict[str, pd.DataFrame]:
  """Name -> table of every curve saved in OUT/tables (learning_curve_NAME.csv), in the order of the paper's model
  variants (baseline, one-pool, no-pool, ...: NAME ends with the run directory's name), then by name."""
  tables = {path.stem.removeprefix("learning_curve_"): read_curve(path)
            for path in Path(out).glob("tables/learning_curve_*.csv")}
  return {name: tables[name] for name in sorted(tables, key=_variant_order)}


def _variant_order(name: str) -> tuple[int, str]:
  """Sort key of a curve name: the index in VARIANTS of the variant it ends with (unknown ones last), then the name."""
  matches = [i for i, variant in enumerate(VARIANTS) if name.endswith(f"-{variant}")]
  return (matches[0] if matches else len(VARIANTS), name)


@dataclasses.dataclass(frozen=True)
class Difference:
  """`column` of curve `a` minus that of curve `b`, paired at each checkpoint both scored in the last half of their
  common training (`steps`: from half the last common step to it), averaged: `value`, the mean paired difference;
  `se`, its standard error (the paired differences' standard deviation / sqrt(n); NaN with one pair). Pairing at
  equal steps cancels the trend the two curves share, and the spread of the pairs holds both curves' sampling noise
  and checkpoint-to-checkpoint wobble. `judged`: at least MIN_PAIRS pairs and |value| > k se (the rule of
  `hrnn.paper.verdicts` for two models' means)."""
  column: str
  a: str
  b: str
  steps: tuple[int, ...]
  value: float
  se: float
  k: float = COMPARE_K

  @property
  def judged(self) -> bool:
    return len(self.steps) >= MIN_PAIRS and abs(self.value) > self.k * self.se  # False with a NaN se


def comparison_window(tables: dict[str, pd.DataFrame], column: str) -> tuple[int, ...]:
  """The steps at which every curve scored `column` with one and the same classifier (`scorers`), from half the last
  such step to it (none: ()): scores of two classifiers differ by more than the curves' sampling noise."""
  if len(tables) < 2:
    return ()
  common = set.intersection(*(set(t[column].dropna().index) for t in tables.values()))
  by = [scorers(t) for t in tables.values()]
  common = {s for s in common if len({b.get(s) for b in by}) == 1}
  if not common:
    return ()
  last = max(common)
  return tuple(sorted(int(s) for s in common if 2 * s >= last))


def compare(tables: dict[str, pd.DataFrame], column: str, k: float = COMPARE_K) -> list[Difference]:
  """The first curve against each other one in `column` over `comparison_window` (none: [])."""
  steps = comparison_window(tables, column)
  if not steps:
    return []
  (first, reference), *others = tables.items()
  differences = []
  for name, table in others:
    paired = [float(reference.loc[s, column] - table.loc[s, column]) for s in steps]
    se = statistics.stdev(paired) / math.sqrt(len(paired)) if len(paired) > 1 else math.nan
    differences.append(Difference(column, first, name, steps, statistics.fmean(paired), se, k))
  return differences


def comparison_plot(tables: dict[str, pd.DataFrame], out: str | os.PathLike, window: tuple[int, ...] = ()) -> Path:
  """OUT/plots/learning_curves.png: every curve's train NLL, IS and FID against training steps, overlaid, with the
  comparison's window of steps shaded."""
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), layout="constrained")
  for name, table in tables.items():
    for ax, column in zip(axes, ("train NLL (bits)", "IS", "FID")):
      points = table[column].dropna()
      ax.plot(points.index, points, "o-", ms=3, label=name)
  for ax, label in zip(axes, ("train NLL (bits per sample, logged batch means)", "IS", "FID")):
    ax.set(xlabel="training step", title=label)
    ax.grid(alpha=0.3)
  if window:
    for ax in axes[1:]:
      ax.axvspan(window[0], window[-1], color="gray", alpha=0.12, lw=0, label="compared (paired steps)")
  axes[1].axhline(IS_GOAL, color="gray", ls="--", label=f"IS {IS_GOAL:g}: recognisable digits")
  axes[1].legend(fontsize=7)
  axes[2].set_yscale("log")
  fig.suptitle("Learning curves of sample quality, overlaid (same model size, data and batch)", fontsize=10)
  path = save_plot(fig, out, "learning_curves")
  plt.close(fig)
  return path


def comparison_text(tables: dict[str, pd.DataFrame], out: str | os.PathLike) -> str:
  """The README's comparison of the curves (Table 2 of the paper: pooling gives better FID and IS at the same
  training): the overlaid plot, each curve at the last step all of them scored and its mean over the compared
  steps, and per other curve whether the first one's IS and FID differ from it (`compare`); computed, never typed.
  A curve whose checkpoints another classifier scored than the first curve's (`scorers`) is left out, and named."""
  if len(tables) < 2:
    return ""
  first, reference = next(iter(tables.items()))
  reference_by = scorers(reference)
  shared = {name: t for name, t in tables.items()
            if name == first or any(reference_by.get(step) == by for step, by in scorers(t).items())}
  left_out = "".join(
      f"{name} is not compared: no checkpoint of it was scored by the classifier that scored {first}'s "
      f"({', '.join(f'`{by}`' for by in sorted(set(reference_by.values())))}; {name}: "
      f"{', '.join(f'`{by}`' for by in sorted(set(scorers(t).values())))}).\n\n"
      for name, t in tables.items() if name not in shared)
  differences = {column: compare(shared, column) for column in ("IS", "FID")}
  if not differences["IS"]:
    return left_out + ("The curves share no checkpoint that one classifier scored in all of them yet: no comparison "
                       "at equal training.")
  tables = shared
  steps = differences["IS"][0].steps
  comparison_plot(tables, out, steps)
  last, span = steps[-1], f"steps {steps[0]:,}-{steps[-1]:,}"
  header = ["curve", "train hours", "train NLL (bits)", "IS", "FID", f"mean IS, {span}", f"mean FID, {span}"]
  rows = [[name, t.loc[last, "train hours"], t.loc[last, "train NLL (bits)"], t.loc[last, "IS"], t.loc[last, "FID"],
           t.loc[list(steps), "IS"].mean(), t.loc[list(steps), "FID"].mean()] for name, t in tables.items()]
  # The validation NLL is logged only every eval_every steps: shown at the last step every run evaluated.
  evaluated = set.intersection(*(set(t["valid NLL (bits)"].dropna().index) if "valid NLL (bits)" in t else set()
                                 for t in tables.values()))
  nll_step = max((s for s in evaluated if s <= last), default=None)
  nll_text = ""
  if nll_step is not None:
    header.insert(3, f"valid NLL (bits), step {nll_step:,}")
    for row, t in zip(rows, tables.values()):
      row.insert(3, t.loc[nll_step, "valid NLL (bits)"])
    nll_text = (f" The valid NLL is that of the EMA weights on the validation split, logged by each run at step "
                f"{nll_step:,}, the last step all of them evaluated (the paper's Table 2 has the pooled and unpooled "
                f"models at about the same NLL; one run each here, so their NLL differences are not judged).")
  lines = [
      "## Comparison at equal training (the paper's Table 2: FID and IS with and without pooling)\n\n",
      "![learning curves](plots/learning_curves.png)\n\n",
      f"Each curve at step {last:,}, the last checkpoint that all of them scored with one classifier (equal steps "
      f"are equal epochs: same batch and data), and its mean over the {len(steps)} checkpoints all of them scored in "
      f"the last half of that training ({span}, shaded in the plot). Two curves are compared by their differences "
      f"paired at those checkpoints: the mean paired difference and its standard error (the pairs' spread holds the "
      f"sampling noise of each point and the wobble between checkpoints; neighbouring checkpoints of one run are not "
      f"independent, so it may understate the noise), judged when it exceeds {COMPARE_K:g} standard errors with at "
      f"least {MIN_PAIRS} pairs. The train hours are each run's logged step times on this machine, which other jobs "
      f"shared at times: not a speed comparison (Table 2's speeds are measured by notebook 03, e.g. in "
      f"results/cpu).{nll_text}\n\n",
      left_out,
      markdown_table(header, rows), "\n",
  ]
  for column, better in (("IS", "higher"), ("FID", "lower")):
    for d in differences[column]:
      a_better = d.value > 0 if better == "higher" else d.value < 0
      if len(d.steps) < MIN_PAIRS:
        verdict = f"over {len(d.steps)} paired checkpoint(s), fewer than {MIN_PAIRS}: not judged yet"
      elif not d.judged:
        verdict = (f"within {d.k:g} times its standard error ({d.se:.3g}): the curves cannot order the two models in "
                   f"{column} yet")
      else:
        verdict = (f"more than {d.k:g} times its standard error ({d.se:.3g}): {d.a} is "
                   f"{'better' if a_better else 'worse'} ({better} {column} is better)")
      lines.append(f"- {column}: {d.a} minus {d.b}, mean over {span} = {d.value:+.3g}, {verdict}.\n")
  return "".join(lines)


def write_readme(out: str | os.PathLike) -> Path:
  """OUT/README.md: OUT/intro.md where there is one (what these runs are, when the list of sections does not say
  it), the comparison of every curve saved in OUT (`comparison_text`, with two or more), then each curve's section
  (OUT/curves/NAME.md, `write_section`) in `read_curves`' order; a link to OUT/earlier/README.md where OUT keeps the
  curves of earlier runs that cannot be compared with these (an OUT of its own, made by this function)."""
  out = Path(out)
  tables = read_curves(out)
  sections = {name: (out / "curves" / f"{name}.md").read_text() for name in tables
              if (out / "curves" / f"{name}.md").exists()}
  earlier, intro = out / EARLIER / "README.md", out / INTRO_FILE
  parts = [
      "# Learning curves of sample quality\n\n",
      intro.read_text().strip() + "\n\n" if intro.exists() else "",
      "How NLL and sample quality (IS, FID with the kit's digit classifier) grow with training time on this machine, "
      "for each model trained: " + ", ".join(f"[{name}](#{_anchor(text)})" for name, text in sections.items())
      + ".\n\n",
      f"Earlier runs, whose curves cannot be compared with these, are kept in [{EARLIER}/]({EARLIER}/README.md).\n\n"
      if earlier.exists() else "",
      comparison_text(tables, out),
  ]
  parts += ["\n" + text for text in sections.values()]
  path = out / "README.md"
  path.write_text("".join(parts))
  return path


def _anchor(section: str) -> str:
  """GitHub's anchor of a section's first heading: lower case, punctuation dropped, spaces to hyphens."""
  title = section.splitlines()[0].lstrip("#").strip().lower()
  return "".join(c for c in title if c.isalnum() or c in " -_").replace(" ", "-")


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m hrnn.paper.curves", description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir", help="run directory with checkpoints (keep them all: --keep-checkpoints)")
  parser.add_argument("--out", required=True, help="results folder: tables/, plots/ (e.g. results/workstation)")
  parser.add_argument("--every", type=int, default=None,
                      help="score checkpoints at multiples of this step and the newest one (default: every one)")
  parser.add_argument("--n", type=int, default=64,
                      help="generated clips per checkpoint (0: only the NLL columns, no classifier needed)")
  parser.add_argument("--classifier", default=None,
                      help="digit classifier file; default: OUT/classifier/DATASET.pt, trained when missing")
  parser.add_argument("--classifier-epochs", type=int, default=2,
                      help="epochs when the classifier is trained (2 over the full sc09-espeak's 6,460 clips: ~200 "
                           "batches of 64; its test accuracy is printed)")
  parser.add_argument("--export", default=None, metavar="DEST", help="also export the newest EMA weights to DEST")
  args = parser.parse_args(argv)
  try:
    config = read_config(args.workdir)
    if config is None:
      parser.error(f"{args.workdir} holds no training run (no {CONFIG_FILE})")
    path = Path(args.classifier or Path(args.out) / "classifier" / f"{config.dataset}.pt")
    if args.n == 0:
      classifier = None
    elif path.exists():
      classifier, _ = _metrics().load_classifier(path)
    else:
      metrics = _metrics()
      settings = metrics.TrainSettings(epochs=args.classifier_epochs)
      classifier, _ = metrics.train_classifier(config.dataset, settings=settings, out=path)
    checkpoints = Checkpoints(args.workdir, keep=10 ** 6)
    try:
      available = checkpoints.all_steps()
    finally:
      checkpoints.close()
    steps = [s for s in available if args.every is None or s % args.every == 0 or s == available[-1]]
    table = curve(args.workdir, args.out, classifier, steps=steps, n=args.n)
    print(table.round(3).to_string())
    name = f"{config.dataset}-{Path(args.workdir).name}"
    print(goal_text(table, args.workdir))
    newest = int(max(table.index))
    if classifier is not None:
      kept = keep_samples(samples_dir(args.out, name, newest), Path(args.out) / "audio" / name, classifier,
                          KEEP_SAMPLES)
      print(f"kept {len(kept)} clips of step {newest} in {Path(args.out) / 'audio' / name}")
    if args.export:
      print(f"EMA weights exported to {export_ema(args.workdir, args.export, newest)}")
    command = "python -m hrnn.paper.curves " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"wrote {write_section(args.out, table, name, args.workdir, args.export, command)}")
    print(f"wrote {write_readme(args.out)}")
  except HrnnError as e:  # bad input (another run's table, another copy of the data...): one line, no traceback
    parser.error(str(e))


if __name__ == "__main__":
  main()
