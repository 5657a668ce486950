"""`hrnn eval`: NLL in bits per sample of a trained run on a whole split (EMA weights, padding masked)."""

from __future__ import annotations

import json

from hrnn import data
from hrnn.cli import positive_int

HELP = "Evaluate a trained run: NLL in bits per sample over a whole split, with the EMA weights."


def add_arguments(parser):
  parser.add_argument("--workdir", required=True, help="run directory written by `hrnn train`")
  parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
  parser.add_argument("--batch-size", type=positive_int, help="evaluation batch (default: the run's evaluation batch)")
  parser.add_argument("--raw", action="store_true", help="evaluate the raw weights instead of the EMA")
  parser.add_argument("--data-root", help="data root (default: the run's, else $HRNN_DATA or ~/.cache/hrnn/data)")
  parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args):
  # The one place this module imports JAX (the trainer's modules): `hrnn --help` imports it for its flags.
  from hrnn.train.checkpoint import latest_step, load_model
  from hrnn.train.evaluate import evaluate

  step = latest_step(args.workdir)
  model, config = load_model(args.workdir, ema=not args.raw, step=step)
  ds = data.load_split(config.dataset, args.split, root=args.data_root or config.data_root,
                       minmax_unit=config.minmax_unit)
  batch_size = args.batch_size if args.batch_size is not None else config.eval_batch_size or config.batch_size
  spec = data.get_spec(config.dataset, args.data_root or config.data_root)
  nll = evaluate(model, ds, batch_size, seq_len=spec.length, progress=not args.json)
  result = {"workdir": str(args.workdir), "dataset": config.dataset, "split": args.split, "step": step,
            "weights": "raw" if args.raw else "ema", "examples": len(ds), "nll_bits": nll}
  if args.json:
    print(json.dumps(result))
  else:
    print(f"{config.dataset} {args.split}: {nll:.4f} bits/sample ({len(ds)} examples, {result['weights']} weights "
          f"at step {step})")
