"""Test setup: 8 virtual CPU devices for the sharding tests (must be set before JAX initialises); the tests marked
`heavy` run first."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def pytest_collection_modifyitems(items):
  """Tests marked `heavy` (minutes of CPU each) first, in their order, then the rest in theirs.

  pytest-xdist hands tests to its workers in collection order: a heavy test collected last would keep one worker
  busy long after the other has run out of tests. Started first, the short tests fill in around them.
  """
  items.sort(key=lambda item: item.get_closest_marker("heavy") is None)  # stable: each group keeps its order
