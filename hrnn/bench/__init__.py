"""Benchmarks behind `hrnn bench` and the scripts in benchmarks/. Each module: HELP, add_arguments, run."""
