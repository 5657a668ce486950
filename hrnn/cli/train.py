"""`hrnn train`: train a preset on a dataset in a work directory; rerunning the command resumes it.

Every field of TrainConfig and ModelConfig (hrnn.config) is a flag, generated from the dataclass fields with their
help text: `--batch-size`, `--remat`, `--pool-factors 2 4`, ... A flag given overrides that field of the run's
config (a new run's from `--preset` at its `--scale`, a resumed run's saved one, or `--config`'s).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import types
import typing
from pathlib import Path

from hrnn.cli import finite_float
from hrnn.config import PRESETS, SCALES, VARIANTS, ConfigError, ModelConfig, TrainConfig, train_config

HELP = ("Train a model (AdamW, EMA, checkpoints every N steps and on SIGTERM/SIGINT); rerun with the same "
        "--workdir to resume.")
# Fields that are not flags: the model is built from --preset / --variant and its own fields' flags.
NOT_FLAGS = frozenset({"model", "preset"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--workdir", required=True,
                      help="run directory (checkpoints, metrics.jsonl, config.json); resumed when it holds a run")
  parser.add_argument("--preset", help=f"model preset (needed for a new run): {', '.join(PRESETS)}")
  parser.add_argument("--variant", choices=list(VARIANTS), default="baseline",
                      help="the paper's ablation of the preset (pooling groups, pooling levels, input embedding)")
  parser.add_argument("--scale", choices=list(SCALES),
                      help="run scale giving the batch, lengths, evaluation interval, EMA decay and seed (default: "
                           "the preset's name when it is a scale, else paper)")
  parser.add_argument("--config", help="a TrainConfig JSON file (as WORKDIR/config.json) instead of --preset")
  parser.add_argument("--compile-cache", default="~/.cache/hrnn/jax",
                      help="persistent XLA compilation cache, so a resumed run does not compile again ('' = off)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  add_field_flags(parser.add_argument_group(
      "training (TrainConfig fields: a new run takes them from its --scale, else the default shown)"), TrainConfig)
  add_field_flags(parser.add_argument_group("model (ModelConfig fields: override the preset's; the paper's shown)"),
                  ModelConfig)
  multi = parser.add_argument_group("multi-host (one process per host, same command on each)")
  multi.add_argument("--distributed", action="store_true",
                     help="jax.distributed.initialize() with the cluster's auto-detected settings (TPU pods, SLURM)")
  multi.add_argument("--coordinator", help="HOST:PORT of process 0 (explicit jax.distributed setup)")
  multi.add_argument("--num-processes", type=int, help="number of processes")
  multi.add_argument("--process-id", type=int, help="this process's index")


def add_field_flags(group, cls) -> None:
  """One flag per field of the dataclass `cls` (except NOT_FLAGS): --field-name, typed and with the choices of its
  annotation, its help from the field's metadata. A flag that is not given leaves no attribute on the namespace."""
  hints = typing.get_type_hints(cls)
  for field in dataclasses.fields(cls):
    if field.name in NOT_FLAGS:
      continue
    kind, optional = _unwrap_optional(hints[field.name])
    default = "none" if field.default is None else field.default
    options = dict(dest=field.name, default=argparse.SUPPRESS, help=f"{field.metadata['help']} [default: {default}]")
    if kind is bool:
      options["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is tuple:
      options.update(nargs="*", type=int, metavar="N")
    else:
      choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None
      options.update(type=_parser(str if choices else kind, optional, choices),
                     metavar="{" + ",".join([*choices, *(["none"] if optional else [])]) + "}" if choices else None)
    flags = [f"--{field.name.replace('_', '-')}", *field.metadata.get("aliases", ())]
    group.add_argument(*flags, **options)


def _unwrap_optional(kind):
  """(X, True) for `X | None`, else (kind, False)."""
  args = typing.get_args(kind)
  if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
    return next(a for a in args if a is not type(None)), True
  return kind, False


def _parser(kind, optional: bool, choices):
  """The argparse `type` of a field: its type, "none" for None when optional, one of `choices` when given; floats
  finite (`--lr inf` is an error naming the flag, not a config field after parsing)."""

  def parse(text: str):
    if optional and text.lower() == "none":
      return None
    if choices and text not in choices:
      raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
    return finite_float(text) if kind is float else kind(text)

  parse.__name__ = kind.__name__  # argparse names the type in its error messages
  return parse


def field_overrides(args: argparse.Namespace) -> dict:
  """The TrainConfig and ModelConfig fields given as flags (pool_factors and blocks as tuples)."""
  names = [f.name for cls in (TrainConfig, ModelConfig) for f in dataclasses.fields(cls) if f.name not in NOT_FLAGS]
  return {name: tuple(v) if isinstance(v := getattr(args, name), list) else v
          for name in names if hasattr(args, name)}


def _trainer():
  """(jax, hrnn.train.checkpoint, hrnn.train.loop): the one place this module imports JAX and the trainer, on first
  use, since `hrnn --help` imports this module for its flags and must stay fast."""
  import jax

  from hrnn.train import checkpoint, loop

  return jax, checkpoint, loop


def build_config(args: argparse.Namespace) -> TrainConfig:
  """The run's TrainConfig: the one saved in the work directory (resume), --config, or --preset at its scale;
  the field flags given override it (`TrainConfig.override`)."""
  _, checkpoint, _ = _trainer()
  overrides = field_overrides(args)
  saved = checkpoint.read_config(args.workdir)
  if args.config:
    try:
      values = json.loads(Path(args.config).read_text())
    except ValueError as e:
      raise ConfigError(f"--config {args.config}: not a TrainConfig JSON file ({e})") from None
    return TrainConfig.from_dict(values).override(**overrides)
  if saved is not None and args.preset in (None, saved.preset):
    return saved.override(**overrides)
  if args.preset:
    return train_config(args.preset, scale=args.scale, variant=args.variant, **overrides)
  raise ConfigError(f"{args.workdir} holds no run yet: give --preset (and --dataset) or --config")


def run(args: argparse.Namespace) -> int | None:
  jax, _, loop = _trainer()
  if args.compile_cache:
    jax.config.update("jax_compilation_cache_dir", str(Path(args.compile_cache).expanduser()))
  if args.distributed or args.coordinator:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts; ignored on GPU / TPU
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  config = build_config(args)
  result = loop.train_and_evaluate(config, args.workdir, progress=not args.no_progress)
  if jax.process_index() != 0:
    return None
  if result.interrupted:
    print(f"interrupted at step {result.step}/{result.total_steps}; checkpoint saved in {args.workdir}. "
          f"Run the same command to resume.")
    return 128 + signal.SIGTERM  # the conventional status of a job stopped by SIGTERM: schedulers requeue it
  print(f"done: {result.step} steps ({result.skipped} skipped), test NLL {result.test_nll:.4f} bits/sample "
        f"(EMA weights); metrics in {result.metrics_path}")
  return None
