"""`hrnn metrics`: train the SC09 digit classifier, and score generated samples (FID, IS, mIS, AM)."""

from __future__ import annotations

import argparse
import json
import math

from hrnn.errors import HrnnError
from hrnn.paper.published import table

HELP = "SC09 sample-quality metrics: train the digit classifier, score generated samples (FID, IS, mIS, AM)."
DATASETS = ("sc09-espeak", "sc09")
SIZES = ("sashimi", "cpu", "tiny")  # hrnn.metrics.CLASSIFIER_SIZES (not imported here: it needs torch)


def add_arguments(parser):
  sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
  fmt = argparse.ArgumentDefaultsHelpFormatter

  train = sub.add_parser("train-classifier", formatter_class=fmt,
                         help="train the ResNeXt digit classifier on a dataset and report its test accuracy",
                         description="Train the ResNeXt digit classifier on a prepared SC09-layout dataset "
                         "(`hrnn data prepare` first) and report train/valid/test accuracy.")
  train.add_argument("--dataset", required=True, choices=DATASETS)
  train.add_argument("--size", choices=SIZES, default=None,
                     help="classifier size; None = sashimi with a GPU, cpu otherwise")
  # Defaults: hrnn.metrics.TrainSettings (not imported here: it needs torch; a test keeps them equal).
  train.add_argument("--epochs", type=int, default=20, help="passes over the train split")
  train.add_argument("--batch-size", type=int, default=64, help="clips per step")
  train.add_argument("--learning-rate", type=float, default=3e-3, help="peak of the one-cycle schedule")
  train.add_argument("--seed", type=int, default=0, help="initialisation, shuffling and augmentation seed")
  train.add_argument("--root", default=None, help="data root; None = $HRNN_DATA or ~/.cache/hrnn/data")
  train.add_argument("--out", default=None,
                     help="classifier file to write; None = DATA_ROOT/classifiers/DATASET-SIZE.pt, where "
                     "`hrnn metrics score` looks for it")
  train.add_argument("--json", action="store_true", help="print the training summary as one JSON object")

  score = sub.add_parser("score", formatter_class=fmt,
                         help="score a folder of generated 1 s clips: FID, IS, mIS, AM and the reference rows",
                         description="Score generated clips with SaShiMi's SC09 protocol against a dataset's "
                         "train split, beside the dataset's own train and test rows.")
  score.add_argument("--samples", default=None,
                     help="folder of generated audio files (.wav); None = score only the reference rows")
  score.add_argument("--reference", default="sc09-espeak", choices=DATASETS,
                     help="dataset whose train split is the reference (prepared under --root)")
  score.add_argument("--classifier", default=None,
                     help="classifier file, hrnn's or SaShiMi's resnext.pth; None = the file train-classifier "
                     "writes for --reference")
  score.add_argument("--likelihoods", default=None,
                     help="JSON file: {file name: log-likelihood} or a list in natural file order; scores only the "
                     "files SaShiMi's script would: the --band of the held-out half of its seeded random split "
                     "(10,240 samples -> 2,816 clips)")
  score.add_argument("--band", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                     help="with --likelihoods: fractions of the held-out half's likelihood ranking kept (lowest "
                     "likelihood first); None = SaShiMi's 0.40 0.95")
  score.add_argument("--no-reference-rows", action="store_true", help="skip the train and test rows")
  score.add_argument("--no-torch-fidelity", action="store_true", help="skip torch-fidelity's FID and ISC")
  score.add_argument("--root", default=None, help="data root; None = $HRNN_DATA or ~/.cache/hrnn/data")
  score.add_argument("--batch-size", type=int, default=256, help="clips per classifier forward pass")
  score.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args):
  # The one place this module imports hrnn.metrics (torch): `hrnn --help` imports this module for its flags.
  from hrnn import metrics

  return _train(args, metrics) if args.action == "train-classifier" else _score(args, metrics)


def _train(args, metrics):
  size = args.size or metrics.default_size()
  out = args.out or metrics.default_classifier_path(args.dataset, size, args.root)
  settings = metrics.TrainSettings(epochs=args.epochs, batch_size=args.batch_size,
                                   learning_rate=args.learning_rate, seed=args.seed)
  _, info = metrics.train_classifier(args.dataset, size, settings=settings, root=args.root, out=out,
                                     progress=not args.json)
  info = {"classifier": str(out), "size": size, **info}
  if args.json:
    print(json.dumps(info))
    return
  print(f"classifier ({size}, {args.dataset}) saved to {out}")
  for split in ("train", "valid", "test"):
    print(f"  {split:<5} accuracy {100 * info[f'{split}_accuracy']:6.2f}%  ({info[f'{split}_clips']:,} clips)")
  print(f"  {info['seconds']:.0f} s")


def _score(args, metrics):
  if args.batch_size < 1:
    raise HrnnError(f"--batch-size {args.batch_size}: need a positive number of clips per forward pass")
  if args.band is not None and not args.likelihoods:
    raise HrnnError(f"--band {args.band[0]:g} {args.band[1]:g} selects among samples ranked by likelihood; give "
                    "--likelihoods FILE too (without it every file is scored)")
  try:
    band = metrics.scores.check_band(args.band or metrics.LIKELIHOOD_BAND)
  except HrnnError as e:
    raise HrnnError(f"--band: {e}") from None
  likelihoods = None
  if args.likelihoods:
    try:
      with open(args.likelihoods) as f:
        likelihoods = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise HrnnError(f"cannot read likelihoods file {args.likelihoods}: {e}") from e
  result = metrics.score(args.samples, args.reference, classifier=args.classifier, root=args.root,
                         likelihoods=likelihoods, band=band, reference_rows=not args.no_reference_rows,
                         torch_fidelity=not args.no_torch_fidelity, batch_size=args.batch_size)
  if args.json:
    print(json.dumps(result))
    return
  print("\n".join(format_result(result)))


COLUMNS = (("fid", "FID", "{:.3f}"), ("is", "IS", "{:.3f}"), ("mis", "mIS", "{:.2f}"), ("am", "AM", "{:.3f}"),
           ("is_textbook", "IS(text)", "{:.3f}"), ("fid_torch_fidelity", "FID(tf)", "{:.3f}"),
           ("isc_torch_fidelity", "ISC(tf)", "{:.3f}"))


def format_result(result: dict) -> list[str]:
  """The human-readable report of `hrnn.metrics.score`'s result: a table, clip counts and estimator labels."""
  info = result["classifier"]
  accuracy = f", test accuracy {100 * info['test_accuracy']:.2f}%" if "test_accuracy" in info else ""
  selection = result["selection"]
  kept = " (every file)"
  if selection:
    lo, hi = selection["band"]
    kept = (f": the {100 * lo:g}%..{100 * hi:g}% likelihood band of the held-out half ({selection['held_out']} "
            f"files) of a random split, NumPy seed {selection['seed']} after the mIS of {selection['mis_clips']} "
            "test clips, as SaShiMi's script selects")
  samples = (f"{result['samples_dir']}: {result['scored']} of {result['sample_files']} files scored{kept}"
             if result["samples_dir"] else "none (reference rows only)")
  lines = [f"samples    {samples}", f"reference  {result['reference']} train split",
           f"classifier {info['source']}{accuracy}", ""]
  columns = [c for c in COLUMNS if any(c[0] in row for row in result["rows"].values())]
  lines.append(f"{'set':<10}" + "".join(f"{title:>10}" for _, title, _ in columns))
  for name, row in result["rows"].items():
    lines.append(f"{name:<10}" + "".join(f"{_fmt(fmt, row.get(key)):>10}" for key, _, fmt in columns))
  if result["reference"] == "sc09":
    published = table("sc09_reference")
    for row in published.rows:
      values = dict(zip(published.columns, row.values))
      lines.append(f"{row.label + '*':<10}" + "".join(
          f"{_fmt(fmt, values.get(title)):>10}" for _, title, fmt in columns))
    lines.append("* published by SaShiMi with its own classifier (hrnn.paper.published); not computed here")
  lines.append("")
  lines += [f"clips      {name}: {_clip_summary(counts)}" for name, counts in result["clips"].items()]
  lines.append("")
  lines += [f"{title:<8} = {result['estimators'][key]}" for key, title, _ in columns]
  return lines


def _fmt(fmt: str, value) -> str:
  if value is None:
    return "-"
  return fmt.format(value) if math.isfinite(value) else str(value)


def _clip_summary(c: dict) -> str:
  return (f"{c['files']} files, {c['resampled']} resampled, {c['padded']} padded, {c['cut']} cut, "
          f"{c['silent']} silent")
