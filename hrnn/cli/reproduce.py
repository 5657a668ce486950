"""`hrnn reproduce`: run the paper's notebooks with papermill and build the results README."""

from __future__ import annotations

from pathlib import Path

from hrnn.config import SCALES

HELP = "Regenerate every paper table and figure: run notebooks/NN_*.ipynb at a run scale, write OUT/README.md."


def add_arguments(parser):
  parser.add_argument("--preset", required=True, choices=list(SCALES),
                      help="run scale (hrnn.config.SCALES): smoke (minutes, checks the plumbing), cpu (an hour on a "
                      "laptop, embedded datasets), workstation (hours: the cpu model trained until its samples "
                      "improve), paper (the paper's models, datasets and epochs; needs accelerators)")
  parser.add_argument("--out", default=None, help="output directory; results/PRESET when not given")
  parser.add_argument("--only", nargs="+", metavar="NN", default=None,
                      help="run only these notebooks (number or name prefix, e.g. 02 05_fid_is); the README "
                      "still lists every table, keeping earlier runs' results in OUT")
  parser.add_argument("--notebooks", default=None, metavar="DIR",
                      help="notebook directory; notebooks/ of the hrnn checkout when not given")
  parser.add_argument("--readme-only", action="store_true",
                      help="rebuild OUT/README.md from the tables already in OUT without running notebooks")


def run(args):
  from hrnn.paper.reproduce import build_readme, run_notebooks  # papermill: only when notebooks run

  out = Path(args.out or f"results/{args.preset}")
  failed = []
  if not args.readme_only:
    runs = run_notebooks(args.preset, out, args.only, notebooks_dir=args.notebooks)
    failed = [r for r in runs if not r.ok]
  readme = build_readme(out)
  print(f"results: {readme}")
  for r in failed:
    print(f"FAILED {r.notebook}: {r.error} (executed notebook: {out / 'notebooks' / (r.notebook + '.ipynb')})")
  return 1 if failed else 0
