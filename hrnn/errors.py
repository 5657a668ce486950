"""User-facing errors and warnings: the CLI prints each as one line (`hrnn COMMAND: error: ...`, exit status 2;
`hrnn COMMAND: warning: ...`), with no traceback. Their messages name the culprit (file, flag, value, field) and
what to do."""


class HrnnError(Exception):
  """Base class of errors caused by user input (bad config, missing data, corrupt files...)."""


class HrnnWarning(UserWarning):
  """Base class of warnings about user input that hrnn works around (skipped files, a rebuilt cache...)."""
