"""`hrnn data`: build or download a dataset, or make one of your own audio (`prepare`); summarise it (`info`)."""

from __future__ import annotations

import json

from hrnn.cli import positive_float
from hrnn.data import DATASETS, SIZES, DataError, get_spec, prepare, prepare_folder
from hrnn.data.sources import dataset_home, read_marker
from hrnn.data.stats import describe, entropy_bits, plot

HELP = ("Prepare datasets (generate the embedded ones, download the paper's, make one of your own audio) and show "
        "what they hold.")


def add_arguments(parser):
  names = ", ".join(f"{n} ({'embedded' if s.embedded else s.repo_id})" for n, s in DATASETS.items())
  sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
  prepare = sub.add_parser("prepare", help="generate an embedded dataset, download a real one, or make your own",
                           description="Generate an embedded dataset (deterministic from --seed), download and "
                           "unpack one of the paper's, or (NAME `folder`) make a dataset of your own audio: every "
                           "audio file under --source (WAV, FLAC, OGG, MP3...; any rate, mono or stereo) resampled "
                           "to 16 kHz mono, cut into clips of --clip-seconds, split by file into train / valid / "
                           "test (0.88 / 0.06 / 0.06 in natural path order, at least one file each) and registered "
                           "as --name for `hrnn train --dataset`, `hrnn eval` and `hrnn sample`. A no-op when it "
                           "is already there and up to date.")
  info = sub.add_parser("info", help="clips and seconds per split, skipped files, token histogram",
                        description="Clips and seconds per split, skipped files, speakers (SC09 layout), token "
                        "histogram; --plot adds a spectrogram.")
  prepare.add_argument("name", choices=[*DATASETS, "folder"], metavar="NAME",
                       help=f"dataset: {names}; or `folder` with --source and --name for your own audio")
  info.add_argument("name", metavar="NAME", help=f"dataset: {names}, or one made with `prepare folder`")
  for command in (prepare, info):
    command.add_argument("--root", default=None, help="data root (default: $HRNN_DATA or ~/.cache/hrnn/data)")
  prepare.add_argument("--size", choices=SIZES, default="small",
                       help="embedded datasets: tiny (tests), small (minutes to build), full")
  prepare.add_argument("--seed", type=int, default=0, help="embedded datasets: generation seed")
  own = prepare.add_argument_group("your own audio (NAME `folder`)")
  own.add_argument("--source", metavar="DIR", help="folder tree of audio files")
  own.add_argument("--name", dest="dataset", metavar="NAME",
                   help="name of the new dataset (not a built-in one); use it as `hrnn train --dataset NAME`")
  own.add_argument("--quantization", choices=("mu-law", "linear"), default="mu-law",
                   help="8-bit tokens: mu-law (speech, SC09 and YouTubeMix) or linear (Beethoven)")
  own.add_argument("--clip-seconds", type=positive_float, default=8.0,
                   help="length of the clips the audio is cut into (the dataset's tokens per example / 16,000)")
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
  if args.name == "folder":
    return _prepare_folder(args)
  if args.source is not None or args.dataset is not None:
    raise DataError(f"--source and --name make a dataset of your own audio: `hrnn data prepare folder --source DIR "
                    f"--name NAME` (not `prepare {args.name}`)")
  spec = get_spec(args.name)
  layout = prepare(args.name, size=args.size, root=args.root, seed=args.seed)
  what = f"size {args.size}, seed {args.seed}" if spec.embedded else spec.repo_id
  print(f"{args.name} ({what}) ready in {layout}")


def _prepare_folder(args):
  missing = [flag for flag, value in (("--source DIR", args.source), ("--name NAME", args.dataset)) if not value]
  if missing:
    raise DataError(f"`hrnn data prepare folder` needs {' and '.join(missing)}")
  layout = prepare_folder(args.source, args.dataset, quantization=args.quantization,
                          clip_seconds=args.clip_seconds, root=args.root)
  marker = read_marker(dataset_home(args.dataset, args.root))
  files = {split: len(names) for split, names in marker["files"].items()}
  print(f"{args.dataset} (your audio from {marker['source_dir']}, {marker['quantization']}, clips of "
        f"{marker['clip_seconds']:g} s) ready in {layout}")
  print("files " + ", ".join(f"{s} {n}" for s, n in files.items()) + "; clips "
        + ", ".join(f"{s} {n}" for s, n in marker["clips"].items())
        + (f"; skipped {len(marker['skipped'])} unreadable" if marker["skipped"] else "")
        + (f"; ignored {marker['ignored']} non-audio" if marker["ignored"] else ""))
  print(f"train on it: hrnn train --preset cpu --dataset {args.dataset} --workdir runs/{args.dataset}")


def _info(args):
  summary = describe(args.name, root=args.root, data_dir=args.data_dir, quantization=args.quantization,
                     examples=args.examples)
  if args.plot:
    summary["plot"] = str(plot(summary, args.plot))
  if args.json:
    print(json.dumps(summary))
    return
  marker = summary["marker"] or {}
  built = (f"size {marker['size']}, seed {marker['seed']}, built in {marker['seconds_to_build']} s"
           if marker.get("source") == "generated" else
           f"your audio from {marker['source_dir']}, clips of {marker['clip_seconds']:g} s"
           if marker.get("source") == "folder" else marker.get("source", "--data-dir copy"))
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
  for path, why in marker.get("skipped", []) if marker.get("source") == "folder" else []:
    print(f"skipped while preparing: {path}: {why}")
  if sc09:
    print(f"speakers shared across splits: {len(summary['shared_speakers'])}")
  if args.plot:
    print(f"plot written to {summary['plot']}")
