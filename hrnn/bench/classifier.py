"""Benchmark: the SC09 digit classifier on the full embedded sc09-espeak (target: >= 95% test accuracy).

Builds sc09-espeak at size "full" (once), trains the classifier at the chosen size, and computes the dataset's
real-data reference rows (train vs train, test vs train) with it: one JSON object with the accuracies, the rows
and the seconds taken. Not part of CI (tens of minutes on a CPU).
"""

from __future__ import annotations

import json

from hrnn.cli.metrics import SIZES
from hrnn.data import prepare

HELP = "Train the CPU-sized digit classifier on full sc09-espeak: test accuracy (target >= 95%%) and reference rows."
TARGET_ACCURACY = 0.95


def add_arguments(parser):
  parser.add_argument("--size", default="cpu", choices=SIZES, help="classifier size")
  parser.add_argument("--data-size", default="full", choices=("tiny", "small", "full"),
                      help="sc09-espeak size to build and train on (hrnn.data.prepare rebuilds a copy of another "
                      "size under --root)")
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--root", default=None, help="data root; None = $HRNN_DATA or ~/.cache/hrnn/data")
  parser.add_argument("--out", default=None, help="where to save the classifier; None = not saved")
  parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
  parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args):
  import torch  # torch and hrnn.metrics only when it runs: `hrnn --help` imports this module for its flags

  from hrnn.metrics import TrainSettings, score, train_classifier

  torch.set_num_threads(args.threads)
  prepare("sc09-espeak", size=args.data_size, root=args.root)
  settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size)
  # Progress bars go to stderr, the JSON to stdout.
  model, info = train_classifier("sc09-espeak", args.size, settings=settings, root=args.root, out=args.out)
  rows = score(None, "sc09-espeak", classifier=model, root=args.root)["rows"]
  result = {"benchmark": "classifier", "dataset": f"sc09-espeak ({args.data_size})", "size": args.size,
            "device": "cuda" if torch.cuda.is_available() else f"cpu ({args.threads} threads)",
            **{k: info[k] for k in ("train_clips", "valid_clips", "test_clips", "train_accuracy", "valid_accuracy",
                                    "test_accuracy", "seconds")},
            "epochs": args.epochs, "target_test_accuracy": TARGET_ACCURACY,
            "meets_target": info["test_accuracy"] >= TARGET_ACCURACY, "reference_rows": rows}
  if args.json:
    print(json.dumps(result))
    return
  for key, value in result.items():
    print(f"{key:<22} {value}")
