"""`hrnn info`: parameter count and structure of a preset."""

from __future__ import annotations

import json

from hrnn.config import PRESETS

HELP = "Show a preset's parameter count, pooling structure and per-module parameter breakdown."


def add_arguments(parser):
  parser.add_argument("--preset", required=True, help=f"model preset, one of: {', '.join(PRESETS)}")
  parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args):
  from hrnn.model.summary import describe  # the one place this module imports JAX: `hrnn --help` stays fast

  info = describe(args.preset)
  if args.json:
    print(json.dumps(info))
    return
  print(f"preset            {info['preset']}")
  print(f"parameters        {info['params']:,}")
  print(f"pool factors      {info['pool_factors']} (total {info['total_pool']})")
  print(f"temporal blocks   {info['temporal_blocks']}")
  print(f"width / LRU width {info['width']} / {info['lru_width']}, pooling groups {info['pool_groups']}, "
        f"embedding {info['embedding']}")
  print("levels (rate = tokens per step at that level):")
  for level in info["levels"]:
    print(f"  level {level['level']}: rate 1/{level['rate']:<4} {level['temporal_blocks']} temporal blocks "
          f"per path{' (innermost)' if level['innermost'] else ''}")
  print("parameters by module:")
  width = max(len(k) for k in info["breakdown"])
  for name, n in info["breakdown"].items():
    print(f"  {name:<{width}}  {n:>10,}")
