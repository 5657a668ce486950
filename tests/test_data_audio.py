"""Audio reading / writing and the bad-input rules: resampling, down-mixing, corrupt / truncated / empty files."""

import numpy as np
import pytest
import soundfile as sf

from hrnn.data import AudioError, read_audio, write_wav
from hrnn.data.audio import probe, resampled_length


def test_write_read_round_trip(tmp_path):
  x = np.random.default_rng(0).uniform(-0.9, 0.9, 1000).astype(np.float32)
  path = write_wav(tmp_path / "sub" / "a.wav", x, 16000)
  info = sf.info(str(path))
  assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
  y = read_audio(path)
  assert y.dtype == np.float32 and y.shape == (1000,)
  assert np.abs(y - x).max() <= 1 / 2**15


def test_write_clips_out_of_range(tmp_path):
  y = read_audio(write_wav(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5], np.float32)))
  assert y[0] == pytest.approx(1.0, abs=1e-4) and y[1] == -1.0 and y[2] == pytest.approx(0.5, abs=1e-4)


def test_stereo_is_down_mixed(tmp_path):
  left, right = np.full(100, 0.5, np.float32), np.full(100, -0.25, np.float32)
  sf.write(str(tmp_path / "st.wav"), np.stack([left, right], 1), 16000, subtype="PCM_16")
  assert probe(tmp_path / "st.wav").channels == 2
  np.testing.assert_allclose(read_audio(tmp_path / "st.wav"), 0.125, atol=1 / 2**15)


def test_other_rates_are_resampled(tmp_path):
  t = np.arange(22050) / 22050
  sf.write(str(tmp_path / "s.wav"), 0.5 * np.sin(2 * np.pi * 440 * t), 22050, subtype="PCM_16")
  y = read_audio(tmp_path / "s.wav", 16000)
  assert len(y) == resampled_length(22050, 22050, 16000) == 16000
  spectrum = np.abs(np.fft.rfft(y))
  assert np.argmax(spectrum) == 440  # 1 s at 16 kHz: bin k is k Hz
  assert resampled_length(1000, 8000, 16000) == 2000 and resampled_length(3, 44100, 16000) == 2


def test_corrupt_file_names_the_file(tmp_path):
  bad = tmp_path / "garbage.wav"
  bad.write_bytes(b"not audio at all" * 10)
  with pytest.raises(AudioError, match="garbage.wav: not readable audio"):
    read_audio(bad)


def test_empty_and_frameless_files(tmp_path):
  (tmp_path / "empty.wav").write_bytes(b"")
  with pytest.raises(AudioError, match="empty.wav"):
    probe(tmp_path / "empty.wav")
  sf.write(str(tmp_path / "none.wav"), np.zeros(0, np.float32), 16000)
  with pytest.raises(AudioError, match="none.wav: contains no audio frames"):
    read_audio(tmp_path / "none.wav")


def test_truncated_wav_is_detected(tmp_path):
  full = write_wav(tmp_path / "full.wav", np.zeros(16000, np.float32))
  cut = tmp_path / "cut.wav"
  cut.write_bytes(full.read_bytes()[:20000])
  assert sf.info(str(cut)).frames < 16000  # libsndfile alone would read the short part silently
  with pytest.raises(AudioError, match=r"cut.wav: truncated WAV \(header declares 32000 data bytes, file holds "
                     r"19956\)"):
    read_audio(cut)


def test_write_rejects_multichannel(tmp_path):
  from hrnn.data import DataError
  with pytest.raises(DataError, match="mono"):
    write_wav(tmp_path / "x.wav", np.zeros((10, 2), np.float32))
