"""beethoven-piano / piano-minute: score -> notes -> MIDI -> fluidsynth, split by piece in Beethoven's layout."""

import json

import numpy as np
import pytest
import soundfile as sf

from hrnn.data import DataError, SPLITS, load_split, prepare
from hrnn.data.layout import ratio_bounds
from hrnn.data.piano import (TICKS_PER_SECOND, assign_pieces, catalogue, feasible_total, join, midi_bytes,
                             score_notes, split_counts)
from hrnn.data.sources import MARKER


def test_score_notes_follow_tempo_and_merge_ties():
  from music21 import chord, note, stream, tempo, tie

  part = stream.Part()
  part.insert(0, tempo.MetronomeMark(number=60))  # 1 s per quarter until quarter 2
  part.insert(2, tempo.MetronomeMark(number=120))  # then 0.5 s
  part.insert(0, note.Note("C4", quarterLength=1))
  held = note.Note("D4", quarterLength=2)
  held.tie = tie.Tie("start")
  tail = note.Note("D4", quarterLength=1)
  tail.tie = tie.Tie("stop")
  part.insert(1, held)
  part.insert(3, tail)
  part.insert(4, chord.Chord(["E4", "G4"], quarterLength=0.5))
  grace = note.Note("A4").getGrace()
  part.insert(4, grace)
  notes = score_notes(stream.Score([part]))
  # quarter q -> seconds: q below 2, else 2 + (q - 2) / 2
  expected = [[0, 1, 60], [1, 3, 62], [3, 3.25, 64], [3, 3.25, 67]]
  got = sorted(notes[:, :3].tolist())
  assert got == expected
  assert (notes[:, 3] > 0).all()


def test_midi_bytes_round_trip():
  from music21 import midi

  notes = np.array([[0.0, 0.5, 60, 90], [0.25, 1.0, 64, 70], [1.0, 1.0, 67, 200]])  # zero length, loud
  file = midi.MidiFile()
  file.readstr(midi_bytes(notes))
  assert file.format == 0 and file.ticksPerQuarterNote == 480 and len(file.tracks) == 1
  tick, played = 0, []
  for event in file.tracks[0].events:
    if event.isDeltaTime():
      tick += event.time
    elif event.isNoteOn():
      played.append(("on", tick, event.pitch, event.velocity))
    elif event.isNoteOff():
      played.append(("off", tick, event.pitch))
  on = [p for p in played if p[0] == "on"]
  assert on == [("on", 0, 60, 90), ("on", 240, 64, 70), ("on", 960, 67, 127)]  # velocity clipped to 127
  offs = {p[2]: p[1] for p in played if p[0] == "off"}
  assert offs == {60: 480, 64: 960, 67: 961}  # a zero-length note still lasts one tick
  assert TICKS_PER_SECOND == 960


def test_join_places_pieces_one_after_another():
  a = np.array([[0.0, 2.0, 60, 80]])
  b = np.array([[0.0, 1.0, 62, 80], [0.5, 3.0, 64, 80]])
  joined = join([a, b])
  assert joined[:, 0].tolist() == [0.0, 2.5, 3.0] and joined[:, 1].tolist() == [2.0, 3.5, 5.5]


def test_split_counts_and_feasible_total():
  assert split_counts(4328) == (3808, 260, 260) and split_counts(241) == (212, 14, 15)
  # available 22 / 3 / 5: n = 26 gives 22 / 2 / 2; n = 27 would need 23 train clips
  assert feasible_total({"train": 22, "valid": 3, "test": 5}) == 26
  assert feasible_total({"train": 7, "valid": 1, "test": 1}) == 9 and split_counts(9) == (7, 1, 1)
  with pytest.raises(DataError, match="too little audio"):
    feasible_total({"train": 50, "valid": 0, "test": 4})


def test_assign_pieces_is_a_seeded_partition():
  seconds = list(np.random.default_rng(0).uniform(20, 300, 30))
  splits = assign_pieces(seconds, 8, np.random.default_rng(5))
  assert splits == assign_pieces(seconds, 8, np.random.default_rng(5))
  assert splits != assign_pieces(seconds, 8, np.random.default_rng(6))
  flat = [i for s in SPLITS for i in splits[s]]
  assert sorted(flat) == list(range(30)) and all(splits[s] for s in SPLITS)
  with pytest.raises(DataError, match="too few"):
    assign_pieces([100.0, 100.0], 8, np.random.default_rng(0))
  # 3,500 clips in all: valid and test need 211 each; a 4,000 s piece (1,000 clips) would be mostly left out
  mixed = [4000.0] * 3 + [40.0] * 50
  for seed in range(5):
    held = assign_pieces(mixed, 4, np.random.default_rng(seed))
    assert all(i >= 3 for s in ("valid", "test") for i in held[s])
  assert assign_pieces([4000.0] * 3, 8, np.random.default_rng(0))["test"]  # no small piece: a big one it is


def test_catalogue_puts_beethoven_first_without_duplicates():
  pieces = catalogue(("beethoven/**/*", "mozart/**/*"))
  assert "/beethoven/" in pieces[0] and "/mozart/" in pieces[-1]
  stems = [p.rsplit(".", 1)[0] for p in pieces]
  assert len(stems) == len(set(stems))  # opus18no1 exists as .krn and .mxl: one kept
  assert [p.rsplit("/", 1)[1] for p in pieces[:4]] == [f"movement{i}.mxl" for i in range(1, 5)]
  chorales = catalogue(("bach/bwv1[5-9].*",))  # bwv18.5 has two editions (-lz, -w): one piece
  assert [p.rsplit("/", 1)[1] for p in chorales] == ["bwv16.6.mxl", "bwv17.7.mxl", "bwv18.5-lz.mxl", "bwv19.7.mxl"]
  with pytest.raises(DataError, match="no scores match"):
    catalogue(("nobody/*",))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  root = tmp_path_factory.mktemp("piano")
  prepare("beethoven-piano", size="tiny", root=root, seed=0)
  return root


def test_tiny_beethoven_piano_layout_and_loader(tiny):
  marker = json.loads((tiny / "beethoven-piano" / MARKER).read_text())
  layout = tiny / "beethoven-piano" / "data"
  files = sorted(layout.glob("*.wav"), key=lambda p: int(p.stem))
  n = len(files)
  assert [p.stem for p in files] == [str(i) for i in range(n)]  # numbered like Beethoven's clips
  first, second = ratio_bounds(n)
  assert marker["clips"] == {"train": first, "valid": second - first, "test": n - second}
  for path in files[:3]:
    info = sf.info(str(path))
    assert (info.frames, info.samplerate, info.channels) == (128_000, 16000, 1)
  sizes = {s: len(load_split("beethoven-piano", s, root=tiny)) for s in SPLITS}
  assert sizes == marker["clips"]
  pieces = marker["pieces"]
  assert not set(pieces["train"]) & set(pieces["valid"]) and not set(pieces["valid"]) & set(pieces["test"])
  assert not set(pieces["train"]) & set(pieces["test"])
  audio = load_split("beethoven-piano", "valid", root=tiny)[0]["tokens"]
  assert len(audio) == 128_000 and len(np.unique(audio)) > 100  # music, not silence


@pytest.mark.slow
def test_piano_minute_tiny_is_deterministic(tmp_path):
  first = prepare("piano-minute", size="tiny", root=tmp_path / "a", seed=0)
  again = prepare("piano-minute", size="tiny", root=tmp_path / "b", seed=0)
  files = sorted(p.name for p in first.glob("*.wav"))
  assert files == sorted(p.name for p in again.glob("*.wav")) and len(files) >= 9
  assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)
  assert {sf.info(str(first / f)).frames for f in files} == {960_000}
  marker = json.loads((tmp_path / "a" / "piano-minute" / MARKER).read_text())
  assert {s: len(load_split("piano-minute", s, root=tmp_path / "a")) for s in SPLITS} == marker["clips"]
