"""What `hrnn data prepare` left on disk, so that a dataset changed since is noticed rather than read as is.

`prepare` records every file of a dataset's layout folder with its size in ROOT/NAME/hrnn_files.json. Loading a
split and `hrnn data info` compare the folder with that record and warn, naming the files lost, added or changed
(in size); `prepare` rebuilds a dataset that no longer matches its record.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from hrnn.errors import HrnnWarning

MANIFEST = "hrnn_files.json"
TOKENS = "tokens"  # ROOT/NAME/tokens: the token cache (hrnn.data.pipeline)


class DataWarning(HrnnWarning):
  """Files were skipped (each is named; `hrnn data info` lists them all), a token cache was damaged and rebuilt,
  or a dataset changed since it was prepared."""


def layout_files(layout_dir: Path) -> dict[str, int]:
  """Every file under `layout_dir`: path relative to it -> size in bytes. Hidden files and what hrnn itself keeps
  in a dataset folder (the token cache, its records) are left out."""
  files = {}
  for folder, subfolders, names in os.walk(layout_dir):
    top = Path(folder) == layout_dir
    subfolders[:] = [d for d in subfolders if not d.startswith(".") and not (top and d == TOKENS)]
    for name in names:
      if name.startswith(".") or (top and name.startswith("hrnn_")):
        continue
      path = Path(folder) / name
      files[path.relative_to(layout_dir).as_posix()] = path.stat().st_size
  return files


def write_manifest(home: Path, layout_dir: Path) -> None:
  """Records the files of `layout_dir` in HOME/hrnn_files.json (written to a temporary name, then renamed)."""
  path = home / MANIFEST
  tmp = path.with_name(f".{MANIFEST}.{os.getpid()}")
  tmp.write_text(json.dumps({"layout_dir": os.path.relpath(layout_dir, home), "files": layout_files(layout_dir)}))
  tmp.replace(path)


def changes(home: Path) -> list[str] | None:
  """How the layout folder differs from what `prepare` recorded: one line per lost, added or resized file
  (empty when unchanged); None when HOME holds no record (a dataset prepared by an older hrnn)."""
  path = home / MANIFEST
  if not path.is_file():
    return None
  try:
    record = json.loads(path.read_text())
    layout_dir, recorded = home / record["layout_dir"], record["files"]
  except (ValueError, KeyError, TypeError):
    return [f"{path}: damaged record of the prepared files"]
  found = layout_files(layout_dir) if layout_dir.is_dir() else {}
  lost = sorted(set(recorded) - set(found))
  added = sorted(set(found) - set(recorded))
  resized = sorted(f for f in set(found) & set(recorded) if found[f] != recorded[f])
  return ([f"{layout_dir / f}: lost" for f in lost] + [f"{layout_dir / f}: added" for f in added]
          + [f"{layout_dir / f}: size changed" for f in resized])


def warn_if_changed(name: str, home: Path, action: str) -> list[str]:
  """Warns (DataWarning) when the dataset in HOME changed since `prepare`, naming the first changed files and
  `action` (what happens or what to do); returns the changes."""
  changed = changes(home) or []
  if changed:
    shown = "; ".join(changed[:3]) + (f" (and {len(changed) - 3} more)" if len(changed) > 3 else "")
    warnings.warn(DataWarning(f"dataset {name} in {home} changed since `hrnn data prepare` ({len(changed)} "
                              f"file(s): {shown}); {action}"), stacklevel=3)
  return changed
