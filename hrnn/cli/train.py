"""`hrnn train`: train a preset on a dataset in a work directory; rerunning the command resumes it."""

from __future__ import annotations

HELP = ("Train a model (AdamW, EMA, checkpoints every N steps and on SIGTERM/SIGINT); rerun with the same "
        "--workdir to resume.")

# CLI flag -> TrainConfig field, for the flags that override a field directly.
FIELDS = {
    "dataset": "dataset", "data_root": "data_root", "batch_size": "batch_size", "seq_len": "seq_len",
    "steps": "steps", "epochs": "epochs", "lr": "learning_rate", "warmup_steps": "warmup_steps",
    "schedule": "schedule", "grad_accum": "grad_accum", "seed": "seed", "mesh_data": "mesh_data",
    "mesh_seq": "mesh_seq", "checkpoint_every": "checkpoint_every", "keep_checkpoints": "keep_checkpoints",
    "eval_every": "eval_every", "eval_batch_size": "eval_batch_size", "log_every": "log_every",
}


def add_arguments(parser):
  from hrnn.config import PRESETS, REMAT_POLICIES, SCAN_BACKENDS, SCHEDULES  # light: no JAX
  from hrnn.scales import SCALES

  parser.add_argument("--workdir", required=True,
                      help="run directory (checkpoints, metrics.jsonl, config.json); resumed when it holds a run")
  parser.add_argument("--preset", help=f"model preset (needed for a new run): {', '.join(PRESETS)}")
  parser.add_argument("--dataset", help="dataset name (default: the scale's SC09 dataset)")
  parser.add_argument("--scale", choices=list(SCALES),
                      help="run scale giving batch, length and evaluation defaults (default: the preset's name "
                           "when it is a scale, else paper)")
  parser.add_argument("--config", help="a TrainConfig JSON file (as WORKDIR/config.json) instead of --preset")
  length = parser.add_mutually_exclusive_group()
  length.add_argument("--steps", type=int, help="optimizer steps of the whole run")
  length.add_argument("--epochs", type=int, help="epochs of the whole run")
  parser.add_argument("--batch-size", type=int, help="global batch (all devices, hosts, micro-batches)")
  parser.add_argument("--seq-len", type=int, help="tokens per training example (default: whole examples)")
  parser.add_argument("--crop", action="store_true", default=None,
                      help="random crops of --seq-len tokens instead of each example's start")
  parser.add_argument("--lr", type=float, help="peak learning rate (paper: 0.002)")
  parser.add_argument("--warmup-steps", type=int, help="linear warm-up steps (paper: 1000)")
  parser.add_argument("--schedule", choices=SCHEDULES, help="after warm-up (paper: constant)")
  parser.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
  parser.add_argument("--seed", type=int, help="init, dropout and data-order seed")
  parser.add_argument("--remat", choices=REMAT_POLICIES,
                      help="what the backward pass recomputes instead of storing (less memory, more compute)")
  parser.add_argument("--remat-chunk", type=int,
                      help="with --remat block or stack: run each temporal block over time chunks of at most this "
                           "many steps, each recomputed, so memory stops growing with a block's transients "
                           "(minute-long sequences)")
  parser.add_argument("--scan-backend", choices=SCAN_BACKENDS, help="hrnn.scan backend of the recurrences")
  parser.add_argument("--mesh-data", type=int, help="devices along the batch axis (default: all / --mesh-seq)")
  parser.add_argument("--mesh-seq", type=int, help="devices along the time axis (context parallelism)")
  parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
  parser.add_argument("--keep-checkpoints", type=int, help="newest checkpoints kept")
  parser.add_argument("--eval-every", type=int, help="steps between validation NLL evaluations")
  parser.add_argument("--eval-batch-size", type=int, help="evaluation batch (default: --batch-size)")
  parser.add_argument("--log-every", type=int, help="steps between metrics lines")
  parser.add_argument("--data-root", help="data root (default: $HRNN_DATA or ~/.cache/hrnn/data)")
  parser.add_argument("--compile-cache", default="~/.cache/hrnn/jax",
                      help="persistent XLA compilation cache, so a resumed run does not compile again ('' = off)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  multi = parser.add_argument_group("multi-host (one process per host, same command on each)")
  multi.add_argument("--distributed", action="store_true",
                     help="jax.distributed.initialize() with the cluster's auto-detected settings (TPU pods, SLURM)")
  multi.add_argument("--coordinator", help="HOST:PORT of process 0 (explicit jax.distributed setup)")
  multi.add_argument("--num-processes", type=int, help="number of processes")
  multi.add_argument("--process-id", type=int, help="this process's index")


def build_config(args):
  """The run's TrainConfig: the one saved in the work directory (resume), --config, or --preset at its scale;
  explicit flags override its fields."""
  import dataclasses
  import json
  from pathlib import Path

  from hrnn.checkpoint import read_config
  from hrnn.config import ConfigError, TrainConfig, train_config

  overrides = {field: getattr(args, flag) for flag, field in FIELDS.items() if getattr(args, flag) is not None}
  if args.crop is not None:
    overrides["crop"] = args.crop
  if args.steps is not None:
    overrides["epochs"] = None
  if args.epochs is not None:
    overrides["steps"] = None
  saved = read_config(args.workdir)
  if args.config:
    config = dataclasses.replace(TrainConfig.from_dict(json.loads(Path(args.config).read_text())), **overrides)
  elif saved is not None and args.preset in (None, saved.preset):
    config = dataclasses.replace(saved, **overrides)
  elif args.preset:
    config = train_config(args.preset, overrides.pop("dataset", None), scale=args.scale, **overrides)
  else:
    raise ConfigError(f"{args.workdir} holds no run yet: give --preset (and --dataset) or --config")
  model = {k: v for k, v in (("remat", args.remat), ("remat_chunk", args.remat_chunk),
                             ("scan_backend", args.scan_backend)) if v is not None}
  return dataclasses.replace(config, model=dataclasses.replace(config.model, **model))


def run(args):
  import signal

  import jax

  if args.compile_cache:
    from pathlib import Path
    jax.config.update("jax_compilation_cache_dir", str(Path(args.compile_cache).expanduser()))
  if args.distributed or args.coordinator:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts; ignored on GPU / TPU
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)

  from hrnn.train import train_and_evaluate

  config = build_config(args)
  result = train_and_evaluate(config, args.workdir, progress=not args.no_progress)
  if jax.process_index() != 0:
    return None
  if result.interrupted:
    print(f"interrupted at step {result.step}/{result.total_steps}; checkpoint saved in {args.workdir}. "
          f"Run the same command to resume.")
    return 128 + signal.SIGTERM  # the conventional status of a job stopped by SIGTERM: schedulers requeue it
  print(f"done: {result.step} steps ({result.skipped} skipped), test NLL {result.test_nll:.4f} bits/sample "
        f"(EMA weights); metrics in {result.metrics_path}")
  return None
