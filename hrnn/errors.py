"""User-facing errors: the CLI prints these as one clear line (no traceback) and exits with status 2."""


class HrnnError(Exception):
  """Base class of errors caused by user input (bad config, missing data, corrupt files...)."""
