"""beethoven-piano and piano-minute: scores from music21's bundled corpus rendered to piano with fluidsynth.

Each piece is parsed with music21, turned into a one-track MIDI file for General MIDI program 0 (acoustic grand
piano; tied notes merged, tempo marks followed), rendered by fluidsynth with the FluidR3 GM soundfont at 16 kHz,
down-mixed to mono, trimmed of leading / trailing silence and peak-normalised to 0.9.

Pieces, not clips, are assigned to splits (seeded shuffle), so no piece is heard in two splits. Each split's
pieces are joined with half a second of silence between them and cut into clips (8 s for beethoven-piano, one
minute for piano-minute); clips are then numbered 0.wav, 1.wav, ... train first, so that the loader's natsorted
ratio split (train [0, 0.88 n), valid [0.88 n, 0.94 n), test [0.94 n, n)) returns exactly these splits. Clips
beyond what the ratios allow for the largest feasible n are left out (counted in the marker).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from music21 import common, converter
from natsort import natsorted
from tqdm.auto import tqdm

from hrnn.data.audio import downmix, write_wav
from hrnn.data.layout import ratio_bounds
from hrnn.data.specs import SAMPLE_RATE, SPLITS, DataError

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
TICKS_PER_SECOND = 960  # MIDI division 480 per quarter at the default tempo of 120 quarters per minute
GAP_SECONDS = 0.5  # silence between consecutive pieces of a split
GAIN = 0.8  # fluidsynth master gain: dense corpus pieces peak around 0.6 of full scale, none clip
DEFAULT_VELOCITY = 80
POOL_BYTES = 200_000
CLIP_SECONDS = {"beethoven-piano": 8, "piano-minute": 60}


@dataclasses.dataclass(frozen=True)
class PianoSize:
  """Which pieces to render.

  Attributes:
    works: glob patterns relative to music21's corpus folder, in catalogue order.
    max_seconds: each piece is cut to this many seconds (None = whole).
  """

  works: tuple[str, ...]
  max_seconds: float | None


# Beethoven first; other composers of the corpus add volume.
COMPOSERS: tuple[str, ...] = ("beethoven", "mozart", "haydn", "schubert", "schumann_robert", "schumann_clara",
                              "chopin", "joplin", "handel", "corelli", "cpebach", "weber", "verdi", "beach")
EVERYTHING = tuple(f"{composer}/**/*" for composer in COMPOSERS)
# tiny: Bach chorales, a few kB each and quick to parse (tests, smoke runs). small: single quartet movements
# (whole quartets such as opus132 take tens of seconds to parse), cut short.
PRESETS: dict[str, dict[str, PianoSize]] = {
    "beethoven-piano": {
        "tiny": PianoSize(("bach/bwv[1-9].*",), max_seconds=None),
        "small": PianoSize(("beethoven/opus18no1/*", "beethoven/opus59no1/*"), max_seconds=48.0),
        "full": PianoSize(EVERYTHING, max_seconds=None),
    },
    "piano-minute": {
        "tiny": PianoSize(("bach/bwv[1-9].*", "bach/bwv[1-3][0-9].*"), max_seconds=None),
        "small": PianoSize(("beethoven/opus18no1/*", "beethoven/opus59no1/*", "mozart/k80/*", "mozart/k155/*"),
                           max_seconds=80.0),
        "full": PianoSize(EVERYTHING, max_seconds=None),
    },
}
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn")  # in order of preference


def catalogue(works: tuple[str, ...]) -> list[str]:
  """Score files matching `works` (natsorted within a pattern), one file per piece: where a piece exists in
  several files (MusicXML and Humdrum, or editions such as bwv18.5-lz / bwv18.5-w), the first by
  SCORE_SUFFIXES, so that no piece can land in two splits."""
  corpus = _corpus_dir()
  pieces, seen = [], set()
  for pattern in works:
    kept = {}  # work (folder / name before any "-edition") -> its preferred file
    scores = [p for p in corpus.glob(pattern) if p.suffix in SCORE_SUFFIXES]
    for path in natsorted(scores, key=lambda p: (SCORE_SUFFIXES.index(p.suffix), str(p))):
      kept.setdefault(path.parent / path.stem.split("-")[0], path)
    pieces += [str(p) for work, p in natsorted(kept.items(), key=lambda kv: str(kv[0])) if work not in seen]
    seen |= set(kept)
  if not pieces:
    raise DataError(f"no scores match {works} in the music21 corpus at {corpus}")
  return pieces


def _seconds_map(score):
  """Maps quarter-note offsets to seconds following the score's metronome marks (the last tempo continues)."""
  bounds = score.metronomeMarkBoundaries()
  starts = np.array([a for a, _, _ in bounds], np.float64)
  per_quarter = np.array([60.0 / mark.getQuarterBPM() for _, _, mark in bounds])
  cumulative = np.concatenate([[0.0], np.cumsum(np.diff(starts) * per_quarter[:-1])])

  def to_seconds(q):
    i = np.clip(np.searchsorted(starts, q, side="right") - 1, 0, len(starts) - 1)
    return cumulative[i] + (q - starts[i]) * per_quarter[i]

  return to_seconds


def score_notes(score) -> np.ndarray:
  """Note events of a score as float64 [N, 4]: (start s, end s, MIDI pitch, velocity), tied notes merged.

  Grace notes and other zero-length events are left out.
  """
  to_seconds = _seconds_map(score)
  events: list[list[float]] = []
  for part in score.parts or [score]:
    open_ties: dict[int, int] = {}  # MIDI pitch -> index of the event its tie extends
    for element in part.flatten().notes:
      length = float(element.duration.quarterLength)
      if length <= 0 or not hasattr(element, "pitches"):
        continue
      start, end = float(element.offset), float(element.offset) + length
      for note in (element.notes if element.isChord else [element]):
        tie = note.tie or element.tie
        pitch = note.pitch.midi
        if tie is not None and tie.type in ("continue", "stop") and pitch in open_ties:
          events[open_ties[pitch]][1] = end
          if tie.type == "stop":
            del open_ties[pitch]
          continue
        velocity = note.volume.velocity or element.volume.velocity or DEFAULT_VELOCITY
        events.append([start, end, pitch, velocity])
        if tie is not None and tie.type == "start":
          open_ties[pitch] = len(events) - 1
  notes = np.array(events, np.float64).reshape(-1, 4)
  notes[:, 0] = to_seconds(notes[:, 0])
  notes[:, 1] = to_seconds(notes[:, 1])
  return notes[np.argsort(notes[:, 0], kind="stable")]


def _vlq(value: int) -> bytes:
  """MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
  out = [value & 0x7F]
  value >>= 7
  while value:
    out.append(0x80 | (value & 0x7F))
    value >>= 7
  return bytes(reversed(out))


def midi_bytes(notes: np.ndarray) -> bytes:
  """A format-0 standard MIDI file playing `notes` [N, 4] on channel 0 with program 0 (grand piano)."""
  events = []  # (tick, order, status, pitch, velocity); note-offs (order 0) before note-ons at the same tick
  for start, end, pitch, velocity in notes:
    on = int(round(start * TICKS_PER_SECOND))
    off = max(on + 1, int(round(end * TICKS_PER_SECOND)))
    events.append((on, 1, 0x90, int(pitch), int(np.clip(velocity, 1, 127))))
    events.append((off, 0, 0x80, int(pitch), 0))
  events.sort()
  track = bytearray(b"\x00\xff\x51\x03\x07\xa1\x20")  # tempo 500,000 us per quarter (120 per minute)
  track += b"\x00\xc0\x00"  # program change: acoustic grand piano
  tick = 0
  for when, _, status, pitch, velocity in events:
    track += _vlq(when - tick) + bytes([status, pitch, velocity])
    tick = when
  track += b"\x00\xff\x2f\x00"  # end of track
  return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def piece_notes(path: str, max_seconds: float | None) -> np.ndarray:
  """Parses one corpus file: note events [N, 4] shifted to start at 0 s, cut to `max_seconds` when given."""
  notes = score_notes(converter.parse(path))
  notes[:, :2] -= notes[0, 0]
  if max_seconds is not None:
    notes = notes[notes[:, 0] < max_seconds]
    notes[:, 1] = np.minimum(notes[:, 1], max_seconds)
  return notes


def join(pieces: list[np.ndarray]) -> np.ndarray:
  """Plays pieces one after the other, each starting GAP_SECONDS after the previous one's last note ends."""
  joined, start = [], 0.0
  for notes in pieces:
    joined.append(notes + np.array([start, start, 0.0, 0.0]))
    start += notes[:, 1].max() + GAP_SECONDS
  return np.concatenate(joined)


def render(notes: np.ndarray, wav: Path, fluidsynth: str) -> None:
  """Renders note events with fluidsynth (FluidR3 GM, gain GAIN) to a 16 kHz 16-bit stereo WAV file."""
  midi = wav.with_suffix(".mid")
  midi.write_bytes(midi_bytes(notes))
  subprocess.run([fluidsynth, "-ni", "-q", "-g", str(GAIN), "-r", str(SAMPLE_RATE), "-F", str(wav), str(SOUNDFONT),
                  str(midi)], check=True, capture_output=True)
  midi.unlink()


def _tools() -> str:
  fluidsynth = shutil.which("fluidsynth")
  if fluidsynth is None or not SOUNDFONT.is_file():
    raise DataError(f"need fluidsynth and the soundfont {SOUNDFONT}: `apt-get install fluidsynth "
                    "fluid-soundfont-gm` (or `make setup` as root)")
  return fluidsynth


def split_counts(n: int) -> tuple[int, int, int]:
  """Clips per split (train, valid, test) that the loader's ratio split gives n numbered files."""
  first, second = ratio_bounds(n)
  return first, second - first, n - second


def feasible_total(available: dict[str, int]) -> int:
  """The largest n whose ratio split fits the clips available per split, with every split non-empty."""
  for n in range(sum(available.values()), 0, -1):
    counts = dict(zip(SPLITS, split_counts(n)))
    if all(0 < counts[s] <= available[s] for s in SPLITS):
      return n
  raise DataError(f"too little audio to fill train, valid and test (clips available per split: {available}); "
                  "use a larger size")


def assign_pieces(seconds: list[float], clip_seconds: float, rng: np.random.Generator) -> dict[str, list[int]]:
  """Seeded piece -> split assignment: test, then valid, take shuffled pieces until each holds the clips its
  ratio share needs (plus one). A first pass skips pieces that would overshoot that need by more than a quarter
  (their surplus clips would be left out); a second pass takes any piece. Train keeps the rest."""
  total_clips = int(sum(seconds) / clip_seconds)
  _, valid, test = split_counts(total_clips)
  order = [int(i) for i in rng.permutation(len(seconds))]
  splits: dict[str, list[int]] = {"test": [], "valid": [], "train": []}
  for split, need in (("test", test + 1), ("valid", valid + 1)):
    for only_fitting in (True, False):
      for i in list(order):
        have = _clips([seconds[j] for j in splits[split]], clip_seconds)
        if have >= need:
          break
        if only_fitting and have + _clips([seconds[i]], clip_seconds) - need > need // 4:
          continue
        splits[split].append(i)
        order.remove(i)
  splits["train"] = order
  if not all(splits.values()):
    raise DataError(f"{len(seconds)} pieces are too few to give train, valid and test a piece each; "
                    "use a larger size")
  return splits


def _clips(seconds: list[float], clip_seconds: float) -> int:
  """Clips one split's joined pieces give."""
  if not seconds:
    return 0
  return int((sum(seconds) + GAP_SECONDS * (len(seconds) - 1)) * SAMPLE_RATE) // int(clip_seconds * SAMPLE_RATE)


def parse_all(pieces: list[str], max_seconds: float | None, desc: str) -> list[np.ndarray]:
  """piece_notes of every piece; in a process pool when the files hold more than POOL_BYTES (music21 parsing is
  pure Python, ~5-10 s per 100 kB of MusicXML; below that, starting workers costs more than it saves). Workers
  are spawned, so a parent holding JAX threads is safe."""
  large = sum(Path(p).stat().st_size for p in pieces) > POOL_BYTES
  workers = min(os.cpu_count() or 1, len(pieces)) if large else 1
  limits = [max_seconds] * len(pieces)
  if workers <= 1:
    return list(tqdm(map(piece_notes, pieces, limits), total=len(pieces), desc=desc, unit="piece"))
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
    return list(tqdm(pool.map(piece_notes, pieces, limits), total=len(pieces), desc=desc, unit="piece"))


def build(name: str, out_dir: Path, size: str, seed: int) -> dict:
  """Writes `name` ("beethoven-piano" or "piano-minute") in the clips layout under `out_dir`; returns the
  marker's record (clips, seconds and left-out clips per split, pieces per split)."""
  fluidsynth = _tools()
  config = PRESETS[name][size]
  clip_seconds = CLIP_SECONDS[name]
  clip = clip_seconds * SAMPLE_RATE
  pieces = catalogue(config.works)
  notes = parse_all(pieces, config.max_seconds, f"{name}: parsing")
  splits = assign_pieces([n[:, 1].max() for n in notes], clip_seconds, np.random.default_rng(seed))
  out_dir.mkdir(parents=True)
  with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
    wavs = {split: Path(tmp) / f"{split}.wav" for split in SPLITS}
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # one fluidsynth per split
      renders = pool.map(lambda s: render(join([notes[i] for i in splits[s]]), wavs[s], fluidsynth), SPLITS)
      list(tqdm(renders, total=len(SPLITS), desc=f"{name}: rendering", unit="split"))
    available = {split: sf.info(str(wav)).frames // clip for split, wav in wavs.items()}
    counts = dict(zip(SPLITS, split_counts(feasible_total(available))))
    number = 0
    for split in SPLITS:
      with sf.SoundFile(str(wavs[split])) as audio:
        for _ in tqdm(range(counts[split]), desc=f"{name}: writing {split}", unit="clip"):
          write_wav(out_dir / f"{number}.wav", downmix(audio.read(clip, dtype="float32")))
          number += 1
  corpus = _corpus_dir()
  return {"clips": counts, "seconds": {s: counts[s] * clip_seconds for s in SPLITS},
          "clips_left_out": {s: available[s] - counts[s] for s in SPLITS},
          "pieces": {s: [str(Path(pieces[i]).relative_to(corpus)) for i in idx] for s, idx in splits.items()}}


def _corpus_dir() -> Path:
  return Path(common.getCorpusFilePath())
