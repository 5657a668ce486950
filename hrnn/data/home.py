"""Where a dataset lives on disk and how it gets there: ROOT/NAME, its marker, and building in a scratch folder that
is moved into place only when complete (the built-in datasets (hrnn.data.sources) and one's own (hrnn.data.folder)
alike)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hrnn.data.specs import MARKER, DataError, default_root


def dataset_home(name: str, root: str | Path | None = None) -> Path:
  """ROOT/NAME, the folder that holds one dataset."""
  return (Path(root).expanduser() if root is not None else default_root()) / name


def read_marker(home: Path) -> dict | None:
  """The marker of a finished dataset in `home` (ROOT/NAME), or None."""
  path = home / MARKER
  if not path.is_file():
    return None
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError:
    raise DataError(f"{path}: damaged marker file; delete {home} and run `hrnn data prepare` again") from None


def _running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def scratch_dir(path: Path) -> Path:
  """An empty work folder `path` suffixed with the process id, so concurrent runs never share one. Leftovers of
  interrupted runs (same name, process gone) are removed."""
  for old in path.parent.glob(f"{path.name}-*"):
    pid = old.name.rsplit("-", 1)[1]
    if pid.isdigit() and not _running(int(pid)):
      shutil.rmtree(old, ignore_errors=True)
  path = path.with_name(f"{path.name}-{os.getpid()}")
  shutil.rmtree(path, ignore_errors=True)
  path.mkdir(parents=True)
  return path


def install(built: Path, home: Path) -> None:
  """Moves a finished scratch folder to `home`, replacing what was there."""
  if home.exists():
    old = home.parent / f".{home.name}.old-{os.getpid()}"
    home.rename(old)
    shutil.rmtree(old)
  built.rename(home)
