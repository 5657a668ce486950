"""Learning curves of sample quality: NLL, IS and FID of a training run's checkpoints, and its EMA weights kept.

A long run (e.g. the `workstation` scale's baseline, `hrnn.paper.experiments.train`) that keeps its checkpoints becomes a
learning curve: at each chosen checkpoint the EMA weights generate `n` one-second clips, which the kit's digit
classifier scores with SaShiMi's estimators (IS, FID against the training split); the validation NLL is the one
the run logged at that step. The training time to each step is the sum of the logged step times (compilation and
evaluations excluded).

  curve(workdir, out, classifier, ...)   OUT/tables/learning_curve_NAME.{csv,md,json}, OUT/plots/learning_curve_NAME.png
  export_ema(workdir, dest, step)        DEST: a run directory holding only the EMA weights of one checkpoint (a few
                                         MB), which `hrnn sample --checkpoint DEST` and `checkpoint.load_model` read
  steps_to(curve, column, target)        a log-linear extrapolation of the curve to a target value (IS 3)

Run as `python -m hrnn.paper.curves WORKDIR --out results/workstation` (--help for the options).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from pathlib import Path

from hrnn import data
from hrnn.train.checkpoint import CONFIG_FILE, Checkpoints, load_model, read_config

IS_GOAL = 3.0  # IS at which samples of the digit classifier's ten classes count as recognisable digits


def train_seconds(workdir: str | os.PathLike) -> dict[int, float]:
  """Step -> seconds of training up to that logged step: the sum over logged intervals of their steps divided by
  their measured steps per second (tokens_per_s / (batch * seq_len)); the compiling first step counts as the
  interval's mean."""
  config = read_config(workdir)
  seq_len = config.seq_len or data.get_spec(config.dataset).length
  from hrnn.train.loop import read_metrics

  elapsed, previous, total = {}, 0, 0.0
  for record in read_metrics(workdir):
    if "split" in record:
      continue
    rate = record.get("tokens_per_s")
    if rate:
      total += (record["step"] - previous) * config.batch_size * seq_len / rate
    previous = record["step"]
    elapsed[record["step"]] = total
  return elapsed


def logged_train_nll(workdir: str | os.PathLike, steps: list[int]) -> dict[int, float]:
  """Step -> mean logged training loss (bits, batch means) over the logged steps since the previous entry of
  `steps` (ascending): the curve's NLL where no validation was logged."""
  from hrnn.train.loop import read_metrics

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
  from hrnn.train.loop import read_metrics

  found = {}
  for record in read_metrics(workdir):
    if record.get("split") == split and record.get("nll_bits") is not None:
      found[record["step"]] = record["nll_bits"]
  return found


def reference_outputs(dataset: str, classifier, root=None):
  """(features, probabilities) of the classifier on `dataset`'s train split: the FID reference, computed once."""
  from hrnn.metrics import classifier_outputs, split_features

  features, _, _ = split_features(dataset, "train", root)
  return classifier_outputs(classifier, features)


def checkpoint_scores(workdir, step: int, samples_dir: Path, n: int, classifier, reference, *,
                      seed: int = 0, batch_size: int = 16) -> dict[str, float]:
  """Generates `n` one-second clips from the EMA weights of checkpoint `step` into `samples_dir` and scores them
  (SaShiMi's FID, IS, mIS, AM against the train split's classifier outputs `reference`)."""
  from hrnn.model import sampling
  from hrnn.metrics import classifier_outputs, clip_features
  from hrnn.metrics.protocol import set_scores

  model, config = load_model(workdir, step=step)
  spec = data.get_spec(config.dataset)
  samples_dir.mkdir(parents=True, exist_ok=True)
  paths = sampling.generate(model, n, spec.length, seed=seed, out_dir=samples_dir, quantization=spec.quantization,
                            batch_size=min(batch_size, n), progress=False)
  features, _ = clip_features(paths, desc=f"scoring step {step}")
  scores = set_scores(*reference, *classifier_outputs(classifier, features))
  return {k: float(v) for k, v in scores.items()}


def curve(workdir: str | os.PathLike, out: str | os.PathLike, classifier, *, name: str | None = None,
          steps: list[int] | None = None, n: int = 64, seed: int = 0, root=None, label: str = ""):
  """The learning curve of the run in `workdir`: one row per chosen checkpoint (default: every one), saved as
  OUT/tables/learning_curve_NAME and plotted as OUT/plots/learning_curve_NAME.png; rows already in the table are
  reused (the curve grows as the run does). Returns the table (a pandas DataFrame indexed by step).

  classifier: the digit classifier (a ResNeXt); n: generated clips per checkpoint (0: the NLL columns only, IS
  and FID left empty).
  """
  import pandas as pd

  from hrnn.paper.results import dataset_label, save_table

  workdir, out = Path(workdir), Path(out)
  config = read_config(workdir)
  name = name or f"{config.dataset}-{workdir.name}"
  checkpoints = Checkpoints(workdir, keep=10 ** 6)
  try:
    available = checkpoints.all_steps()
  finally:
    checkpoints.close()
  steps = sorted(set(steps or available) & set(available))
  table_path = out / "tables" / f"learning_curve_{name}.csv"
  done = pd.read_csv(table_path, index_col="step") if table_path.exists() else None
  elapsed, nll, train_nll = train_seconds(workdir), logged_nll(workdir), logged_train_nll(workdir, steps)
  steps_per_epoch = data.num_batches(data.load_split(config.dataset, "train", root=root), config.batch_size)
  reference = None
  rows = []
  for step in steps:
    if done is not None and step in done.index and int(done.loc[step, "samples"]) == n:
      rows.append(done.loc[step].to_dict() | {"step": step})
      continue
    if n == 0:
      scores = dict.fromkeys(("is", "fid", "mis", "am"), math.nan)
    else:
      if reference is None:
        reference = reference_outputs(config.dataset, classifier, root)
      scores = checkpoint_scores(workdir, step, out / "runs" / "curve_samples" / name / str(step), n, classifier,
                                 reference, seed=seed)
    rows.append({"step": step, "epoch": step / steps_per_epoch,
                 "train hours": elapsed.get(step, math.nan) / 3600,
                 "train NLL (bits)": train_nll.get(step, math.nan), "valid NLL (bits)": nll.get(step, math.nan),
                 "IS": scores["is"], "FID": scores["fid"], "mIS": scores["mis"], "AM": scores["am"], "samples": n})
  table = pd.DataFrame(rows).set_index("step")
  save_table(table, out, f"learning_curve_{name}", preset=config.preset, datasets=config.dataset,
             notes=f"{label}model preset {config.preset}, batch {config.batch_size} x {config.seq_len} tokens, "
                   f"EMA {config.ema_decay}; IS / FID (SaShiMi's estimators, the kit's classifier) of {n} samples of "
                   f"the EMA weights per checkpoint; train hours: logged step times (compilation and evaluation "
                   f"excluded)")
  plot(table, out, name, f"{dataset_label(config.dataset)}: model {config.preset}, {workdir.name}")
  return table


def steps_to(table, column: str, target: float) -> float | None:
  """The step at which `column` reaches `target` on a straight line through the last half of the curve's points
  (at least 3) against log(step): a rough extrapolation, None when the curve does not move towards the target."""
  points = table[[column]].dropna()
  points = points[points.index > 0]
  if len(points) < 3:
    return None
  tail = points.iloc[len(points) // 2:] if len(points) >= 6 else points
  x = [math.log(s) for s in tail.index]
  y = list(tail[column])
  mx, my = sum(x) / len(x), sum(y) / len(y)
  sxx = sum((a - mx) ** 2 for a in x)
  slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx if sxx else 0.0
  if slope == 0 or (target - y[-1]) / slope < 0:
    return None
  return math.exp(mx + (target - my) / slope)


def plot(table, out, name: str, title: str):
  """NLL, IS and FID against training steps (top axis: training hours), IS_GOAL marked."""
  import matplotlib.pyplot as plt

  from hrnn.paper.results import save_plot

  fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), layout="constrained")
  axes[0].plot(table.index, table["train NLL (bits)"], "o-", label="train (logged batch means)")
  axes[0].plot(table.index, table["valid NLL (bits)"], "s", label="valid (EMA weights)")
  axes[0].legend(fontsize=8)
  for ax, column, style in zip(axes[1:], ("IS", "FID"), ("s-", "^-")):
    ax.plot(table.index, table[column], style)
  for ax, title in zip(axes, ("NLL (bits per sample)", "IS", "FID")):
    ax.set(xlabel="training step", title=title)
    ax.grid(alpha=0.3)
  axes[1].axhline(IS_GOAL, color="gray", ls="--", label=f"IS {IS_GOAL:g}: recognisable digits")
  axes[1].legend(fontsize=8)
  axes[2].set_yscale("log")
  fig.suptitle(f"Learning curve of sample quality: {title}", fontsize=10)
  path = save_plot(fig, out, f"learning_curve_{name}")
  plt.close(fig)
  return path


def export_ema(workdir: str | os.PathLike, dest: str | os.PathLike, step: int | None = None) -> Path:
  """Copies the EMA weights of checkpoint `step` (default: the newest) of the run in `workdir` into DEST, a run
  directory with only those weights and the run's config (no optimiser state: a fraction of the size), which
  `hrnn sample --checkpoint DEST` and `hrnn.train.checkpoint.load_model(DEST)` read. Replaces an older export in DEST."""
  from flax import nnx

  from hrnn.train.loop import checkpoint_meta

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


def write_readme(out: str | os.PathLike, table, name: str, workdir: str | os.PathLike,
                 export: str | os.PathLike | None = None, command: str | None = None) -> Path:
  """OUT/README.md: what the run is, its curve (plot and rounded table; the CSV keeps full precision), the step
  and training hours at which IS would reach IS_GOAL on the curve's trend, the exported weights and how to resume."""
  from hrnn.paper.results import dataset_label, markdown_table

  out, workdir = Path(out), Path(workdir)
  config = read_config(workdir)
  last = table.index.max()
  hours = table.loc[last, "train hours"]
  goal = steps_to(table, "IS", IS_GOAL)
  if table["IS"].isna().all():
    extrapolation = "No checkpoint has been scored with the classifier yet (IS, FID empty)."
  elif goal is None:
    extrapolation = (f"The IS curve does not yet rise steadily enough ({len(table)} points) for an extrapolation to "
                     f"IS {IS_GOAL:g}.")
  else:
    rate = hours / last if last else math.nan
    extrapolation = (f"On the trend of its last points (IS against log step), IS {IS_GOAL:g} would be reached near "
                     f"step {goal:,.0f}, about {goal * rate:,.1f} training hours at this run's measured rate: a rough "
                     f"extrapolation, not a measurement.")
  lines = [
      f"# Learning curve: model `{config.preset}` on {dataset_label(config.dataset)}\n\n",
      f"Regenerated by `{command or f'python -m hrnn.paper.curves {workdir} --out {out}'}`. The run: the `{config.preset}` model preset "
      f"({workdir.name}), batch {config.batch_size} x {config.seq_len} tokens, AdamW at {config.learning_rate:g} "
      f"after {config.warmup_steps} warm-up steps, EMA {config.ema_decay}; {config.steps:,} steps planned, "
      f"{last:,} scored so far ({table.loc[last, 'epoch']:.2f} epochs, {hours:.2f} hours of logged training steps on "
      f"this machine, evaluations and compilation excluded).\n\n",
      f"![learning curve](plots/learning_curve_{name}.png)\n\n",
      markdown_table(["step", *table.columns], [[step, *row] for step, row in zip(table.index, table.values)]),
      f"\nIS and FID: SaShiMi's estimators with the kit's digit classifier trained on the same dataset, "
      f"one-second samples of the EMA weights per checkpoint (`samples`; 0: not scored yet) (IS 1: every sample in "
      f"one class; {IS_GOAL:g}: recognisable digits; 10: ten confident classes). Full precision: "
      f"[tables/learning_curve_{name}.csv](tables/learning_curve_{name}.csv).\n\n{extrapolation}\n",
  ]
  if export is not None:
    exported = Path(export)
    lines.append(f"\nThe EMA weights of step {last:,} are kept in `{exported}` (no optimiser state): "
                 f"`hrnn sample --checkpoint {exported} --n 8 --seconds 1 --out samples` generates from them on a "
                 f"fresh clone, with no training.\n")
  lines.append(f"\nResume the run where it lives (`{workdir}`, not committed): `hrnn train --workdir {workdir}` with "
               f"the same data root; then rerun the command above.\n")
  path = out / "README.md"
  path.write_text("".join(lines))
  return path


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m hrnn.paper.curves", description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir", help="run directory with checkpoints (keep them all: --keep-checkpoints)")
  parser.add_argument("--out", required=True, help="results folder: tables/, plots/ (e.g. results/workstation)")
  parser.add_argument("--every", type=int, default=None, help="score checkpoints at multiples of this step")
  parser.add_argument("--n", type=int, default=64,
                      help="generated clips per checkpoint (0: only the NLL columns, no classifier needed)")
  parser.add_argument("--classifier", default=None,
                      help="digit classifier file; default: OUT/classifier/DATASET.pt, trained when missing")
  parser.add_argument("--classifier-epochs", type=int, default=2,
                      help="epochs when the classifier is trained (2 over the full sc09-espeak's 6,460 clips: ~200 "
                           "batches of 64; its test accuracy is printed)")
  parser.add_argument("--export", default=None, metavar="DEST", help="also export the newest EMA weights to DEST")
  args = parser.parse_args(argv)

  from hrnn.metrics import TrainSettings, load_classifier, train_classifier

  config = read_config(args.workdir)
  if config is None:
    parser.error(f"{args.workdir} holds no training run (no {CONFIG_FILE})")
  path = Path(args.classifier or Path(args.out) / "classifier" / f"{config.dataset}.pt")
  if args.n == 0:
    classifier = None
  elif path.exists():
    classifier, _ = load_classifier(path)
  else:
    classifier, _ = train_classifier(config.dataset, settings=TrainSettings(epochs=args.classifier_epochs), out=path)
  checkpoints = Checkpoints(args.workdir, keep=10 ** 6)
  try:
    available = checkpoints.all_steps()
  finally:
    checkpoints.close()
  steps = [s for s in available if args.every is None or s % args.every == 0]
  table = curve(args.workdir, args.out, classifier, steps=steps, n=args.n)
  print(table.round(3).to_string())
  goal = steps_to(table, "IS", IS_GOAL)
  print(f"IS {IS_GOAL:g} extrapolated at step {goal:,.0f}" if goal else f"IS {IS_GOAL:g}: no extrapolation yet")
  if args.export:
    print(f"EMA weights exported to {export_ema(args.workdir, args.export, max(table.index))}")
  name = f"{config.dataset}-{Path(args.workdir).name}"
  command = "python -m hrnn.paper.curves " + " ".join(argv if argv is not None else sys.argv[1:])
  print(f"wrote {write_readme(args.out, table, name, args.workdir, args.export, command)}")


if __name__ == "__main__":
  main()
