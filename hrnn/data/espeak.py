"""sc09-espeak: the digits zero..nine spoken by espeak-ng, written in SC09's exact layout.

A "speaker" is an English espeak-ng voice combined with a voice variant (`espeak-ng --voices=variant`), e.g.
`en-gb-scotland+f3`; its id (the SC09 file-name prefix) is the first 8 hex digits of the SHA-1 of that name.
Each speaker gets a base speed and pitch; each take varies speed, pitch and amplitude around them. A clip is
synthesised at espeak-ng's 22,050 Hz, resampled to 16 kHz, trimmed of leading and trailing silence, cut to one
second if longer, and placed at a random offset in one second of silence with a -60 dBFS noise floor (the room
noise real recordings have, so silence is not trivially predictable). Speakers are split 80 / 10 / 10 into
train / validation / test, so no voice is shared across splits. Everything random is drawn from the seed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from hrnn.data.audio import resample, write_wav
from hrnn.data.layout import TESTING_LIST, VALIDATION_LIST
from hrnn.data.specs import DIGITS, SAMPLE_RATE, DataError

# English voices of espeak-ng's own (gmw) family; mbrola voices need extra packages.
VOICES: tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                           "en-029", "en-us-nyc")
CLIP = SAMPLE_RATE  # one second
NOISE_FLOOR = 10 ** (-60 / 20)  # -60 dBFS standard deviation
SILENCE_THRESHOLD = 0.02  # trim samples quieter than 2% of the clip's peak at both ends
HELD_OUT = 0.1  # fraction of speakers in each of validation and test


@dataclasses.dataclass(frozen=True)
class EspeakSize:
  """speakers: how many voice+variant speakers (None = all); takes: recordings per speaker and digit."""

  speakers: int | None
  takes: int


PRESETS: dict[str, dict[str, EspeakSize]] = {"sc09-espeak": {
    "tiny": EspeakSize(speakers=10, takes=1),  # 100 clips: tests and demos
    "small": EspeakSize(speakers=40, takes=1),  # 400 clips
    "full": EspeakSize(speakers=None, takes=1),  # every speaker: 8 voices x ~100 variants, ~8,000 clips
}}


@dataclasses.dataclass(frozen=True)
class Take:
  """One clip to synthesise: who says which digit, how, and where it lands in the second."""

  digit: int
  speaker: str  # espeak-ng voice name, VOICE+VARIANT
  take: int
  speed: int  # words per minute
  pitch: int  # 0..99
  amplitude: int  # 0..200
  position: float  # in [0, 1): offset as a fraction of the free room in the clip
  noise_seed: int

  @property
  def relative_path(self) -> str:
    return f"{DIGITS[self.digit]}/{speaker_id(self.speaker)}_nohash_{self.take}.wav"


def speaker_id(voice: str) -> str:
  """SC09-style 8-hex-digit speaker id of an espeak-ng voice name."""
  return hashlib.sha1(voice.encode()).hexdigest()[:8]


def _espeak() -> str:
  path = shutil.which("espeak-ng")
  if path is None:
    raise DataError("espeak-ng not found: install it (`apt-get install espeak-ng`, or `make setup` as root) "
                    "to build sc09-espeak")
  return path


def variants(espeak: str) -> list[str]:
  """Voice variants installed with espeak-ng (file names under `!v/`), sorted."""
  listing = subprocess.run([espeak, "--voices=variant"], capture_output=True, text=True, check=True).stdout
  names = {line.split()[4].removeprefix("!v/") for line in listing.splitlines()[1:] if len(line.split()) >= 5}
  return sorted(names)


def speakers_by_split(all_speakers: list[str], size: EspeakSize, rng: np.random.Generator) -> dict[str, list[str]]:
  """Draws the speakers and splits them 80 / 10 / 10 (at least one speaker per held-out split)."""
  count = len(all_speakers) if size.speakers is None else size.speakers
  if not 3 <= count <= len(all_speakers):
    raise DataError(f"sc09-espeak needs between 3 and {len(all_speakers)} speakers, got {count}")
  chosen = [all_speakers[i] for i in rng.permutation(len(all_speakers))[:count]]
  held = max(1, round(HELD_OUT * count))
  return {"valid": chosen[:held], "test": chosen[held:2 * held], "train": chosen[2 * held:]}


def plan(speakers: list[str], takes: int, rng: np.random.Generator) -> list[Take]:
  """Every (speaker, take, digit) with its synthesis parameters."""
  jobs = []
  for speaker in speakers:
    base_speed, base_pitch = rng.uniform(120, 200), rng.uniform(20, 80)
    for take, digit in itertools.product(range(takes), range(len(DIGITS))):
      jobs.append(Take(digit=digit, speaker=speaker, take=take,
                       speed=int(base_speed * rng.uniform(0.9, 1.1)),
                       pitch=int(np.clip(base_pitch + rng.uniform(-8, 8), 0, 99)),
                       amplitude=int(rng.uniform(60, 160)), position=float(rng.uniform()),
                       noise_seed=int(rng.integers(2**31))))
  return jobs


def synthesize(espeak: str, take: Take) -> np.ndarray:
  """One clip: float32 [16000] at 16 kHz (module docstring)."""
  command = [espeak, "-v", take.speaker, "-s", str(take.speed), "-p", str(take.pitch), "-a", str(take.amplitude),
             "--stdout", DIGITS[take.digit]]
  wav = subprocess.run(command, capture_output=True, check=True).stdout
  x, rate = sf.read(io.BytesIO(wav), dtype="float32")
  x = resample(x, rate, SAMPLE_RATE)
  loud = np.flatnonzero(np.abs(x) > SILENCE_THRESHOLD * np.abs(x).max())
  word = x[loud[0]:loud[-1] + 1][:CLIP]
  clip = np.random.default_rng(take.noise_seed).normal(0.0, NOISE_FLOOR, CLIP).astype(np.float32)
  offset = int(take.position * (CLIP - len(word)))
  clip[offset:offset + len(word)] += word
  return clip


def build(name: str, out_dir: Path, size: str, seed: int) -> dict:
  """Writes sc09-espeak in SC09's layout under `out_dir`; returns counts for the dataset marker."""
  espeak = _espeak()
  config = PRESETS[name][size]
  rng = np.random.default_rng(seed)
  all_speakers = [f"{v}+{variant}" for v in VOICES for variant in variants(espeak)]
  split_speakers = speakers_by_split(all_speakers, config, rng)
  jobs = {split: plan(speakers, config.takes, rng) for split, speakers in split_speakers.items()}
  flat = [job for split_jobs in jobs.values() for job in split_jobs]
  out_dir.mkdir(parents=True)
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    clips = pool.map(lambda job: synthesize(espeak, job), flat)
    for job, clip in tqdm(zip(flat, clips), total=len(flat), desc="sc09-espeak", unit="clip"):
      write_wav(out_dir / job.relative_path, clip)
  for split, list_name in (("valid", VALIDATION_LIST), ("test", TESTING_LIST)):
    (out_dir / list_name).write_text("".join(f"{p}\n" for p in sorted(j.relative_path for j in jobs[split])))
  version = subprocess.run([espeak, "--version"], capture_output=True, text=True).stdout.strip()
  return {"clips": {split: len(j) for split, j in jobs.items()},
          "speakers": {split: len(s) for split, s in split_speakers.items()}, "espeak_ng": version}
