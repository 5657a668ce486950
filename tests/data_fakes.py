"""Tiny fake copies of the real datasets' on-disk layouts (and their zip archives) for the data tests."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from hrnn.data import DIGITS, write_wav

# Speakers of the fake SC09 copy, by split (disjoint, like the real one).
SC09_SPEAKERS = {"train": ("0a1b2c3d", "1b2c3d4e", "2c3d4e5f"), "valid": ("3d4e5f60",), "test": ("4e5f6071",)}


def noise(n: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)


def fake_sc09(top: Path) -> Path:
  """SC09 layout under `top`: each speaker says each digit once; lengths 8,000..16,000 (some padded).

  Returns the layout folder. Splits: train 30 clips, valid 10, test 10.
  """
  lists = {"valid": [], "test": []}
  k = 0
  for split, speakers in SC09_SPEAKERS.items():
    for who in speakers:
      for digit in DIGITS:
        name = f"{digit}/{who}_nohash_0.wav"
        write_wav(top / name, noise(8000 + 800 * (k % 11), k))
        k += 1
        if split in lists:
          lists[split].append(name)
  (top / "validation_list.txt").write_text("\n".join(lists["valid"]) + "\n")
  (top / "testing_list.txt").write_text("\n".join(lists["test"]) + "\n")
  return top


def fake_clips(top: Path, count: int, frames: int = 64) -> Path:
  """"clips" layout: `count` numbered WAV files 0.wav .. of `frames` samples each (file i holds seed i)."""
  for i in range(count):
    write_wav(top / f"{i}.wav", noise(frames, i))
  return top


def zip_folder(folder: Path, archive: Path, prefix: str) -> Path:
  """Zips `folder`'s files under the top-level folder `prefix` (as the hub archives do)."""
  with zipfile.ZipFile(archive, "w") as z:
    for path in sorted(folder.rglob("*")):
      if path.is_file():
        z.write(path, f"{prefix}/{path.relative_to(folder)}")
  return archive
