"""The benchmarks behind `hrnn bench` (its only entry point). Each module: HELP, add_arguments, run."""

import resource


def peak_rss_mb() -> float:
  """This process's peak resident memory so far, in MiB (Linux reports ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
