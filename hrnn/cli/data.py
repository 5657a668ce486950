"""`hrnn data`: build or download a dataset (`prepare`) and summarise it (`info`)."""

from __future__ import annotations

import json

HELP = "Prepare datasets (generate the embedded ones, download the paper's) and show what they hold."


def add_arguments(parser):
  from hrnn.data.sources import SIZES  # light: no audio or JAX imports
  from hrnn.data.specs import DATASETS

  names = ", ".join(f"{n} ({'embedded' if s.embedded else s.repo_id})" for n, s in DATASETS.items())
  sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
  prepare = sub.add_parser("prepare", help="generate an embedded dataset or download and unpack a real one",
                           description="Generate an embedded dataset (deterministic from --seed) or download and "
                           "unpack one of the paper's; a no-op when it is already there.")
  info = sub.add_parser("info", help="clips and seconds per split, skipped files, token histogram",
                        description="Clips and seconds per split, skipped files, speakers (SC09 layout), token "
                        "histogram; --plot adds a spectrogram.")
  for command in (prepare, info):
    command.add_argument("name", choices=list(DATASETS), metavar="NAME", help=f"dataset: {names}")
    command.add_argument("--root", default=None, help="data root (default: $HRNN_DATA or ~/.cache/hrnn/data)")
  prepare.add_argument("--size", choices=SIZES, default="small",
                       help="embedded datasets: tiny (tests), small (minutes to build), full")
  prepare.add_argument("--seed", type=int, default=0, help="embedded datasets: generation seed")
  info.add_argument("--data-dir", default=None, help="read an unpacked copy of the dataset here instead of ROOT")
  info.add_argument("--quantization", choices=("mu-law", "linear"), default=None,
                    help="token histogram quantization (default: the dataset's own)")
  info.add_argument("--examples", type=int, default=256,
                    help="examples decoded per split for the histogram (spread evenly; 0 = all)")
  info.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
  info.add_argument("--plot", default=None, metavar="PNG", help="write a spectrogram + histogram figure here")


def run(args):
  if args.action == "prepare":
    return _prepare(args)
  return _info(args)


def _prepare(args):
  from hrnn.data import get_spec, prepare

  spec = get_spec(args.name)
  layout = prepare(args.name, size=args.size, root=args.root, seed=args.seed)
  what = f"size {args.size}, seed {args.seed}" if spec.embedded else spec.repo_id
  print(f"{args.name} ({what}) ready in {layout}")


def _info(args):
  from hrnn.data.stats import describe, entropy_bits, plot

  summary = describe(args.name, root=args.root, data_dir=args.data_dir, quantization=args.quantization,
                     examples=args.examples)
  if args.plot:
    summary["plot"] = str(plot(summary, args.plot))
  if args.json:
    print(json.dumps(summary))
    return
  marker = summary["marker"] or {}
  built = (f"size {marker['size']}, seed {marker['seed']}, built in {marker['seconds_to_build']} s"
           if marker.get("source") == "generated" else marker.get("source", "--data-dir copy"))
  print(f"{summary['name']}  ({built})  {summary['layout_dir']}")
  print(f"quantization {summary['quantization']}, {summary['length']:,} tokens per example, "
        f"{summary['sample_rate']} Hz")
  sc09 = "speakers" in summary["splits"]["train"]
  print(f"{'split':<6} {'clips':>7} {'seconds':>10} {'padded':>7} {'skipped':>8} {'silent':>7} "
        f"{'entropy':>8}" + (f" {'speakers':>9}" if sc09 else ""))
  for split, s in summary["splits"].items():
    print(f"{split:<6} {s['clips']:>7,} {s['seconds']:>10,.1f} {s['padded']:>7,} {len(s['skipped']):>8,} "
          f"{s['silent']:>7,} {entropy_bits(s['histogram']):>8.3f}" + (f" {s['speakers']:>9,}" if sc09 else ""))
  print("(entropy: bits per token of the token histogram over the examined clips; silent: among those)")
  for split, s in summary["splits"].items():
    notes = {k: s[k] for k in ("resampled", "downmixed", "cut") if s[k]}
    if notes:
      print(f"{split}: handled as documented: {notes}")
    for path, why in s["skipped"]:
      print(f"{split}: skipped {path}: {why}")
  if sc09:
    print(f"speakers shared across splits: {len(summary['shared_speakers'])}")
  if args.plot:
    print(f"plot written to {summary['plot']}")
