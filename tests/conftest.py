"""Test setup: XLA flags (before JAX initialises), the tests marked `heavy` first."""

import os

# 8 virtual CPU devices for the sharding tests. And XLA's CPU code generation without LLVM's optimisation passes:
# the tests compile hundreds of programs and run each for moments, so compiling dominates their time, and
# unoptimised code compiles in about half the CPU time (as at the smoke scale, whose notebooks do the same). Flags
# already in $XLA_FLAGS win; the training subprocesses of the tests inherit these.
FLAGS = {"--xla_force_host_platform_device_count": "8", "--xla_backend_optimization_level": "0"}
given = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join([given] + [f"{k}={v}" for k, v in FLAGS.items() if k not in given]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def pytest_collection_modifyitems(items):
  """Tests marked `heavy` (minutes of CPU each) first, in their order, then the rest in theirs.

  pytest-xdist hands tests to its workers in collection order: a heavy test collected last would keep one worker
  busy long after the other has run out of tests. Started first, the short tests fill in around them.
  """
  items.sort(key=lambda item: item.get_closest_marker("heavy") is None)  # stable: each group keeps its order
