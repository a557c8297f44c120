"""Decoding and resampling of users' sound clips (omnimap.media.audio).

Every clip is synthesised with NumPy and written with soundfile, so nothing is
downloaded. Needs the `sound` extra (soundfile, soxr).
"""

import sys

import numpy as np
import pytest

sf = pytest.importorskip("soundfile", reason="needs the sound extra: pip install 'omnimap[sound]'")
pytest.importorskip("soxr", reason="needs the sound extra: pip install 'omnimap[sound]'")

from omnimap.core.errors import DataError, InputError  # noqa: E402
from omnimap.media import audio  # noqa: E402
from omnimap.media.audio import Waveform, read_audio, window_starts, windows  # noqa: E402


def tone(freq, seconds, rate, amp=0.5, channels=1):
    t = np.arange(round(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1)


def peak_hz(wave: Waveform) -> float:
    """Frequency of the spectrum's highest bin (Hann window against leakage)."""
    x = wave.samples.astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / wave.sample_rate)[spec.argmax()])


def one_line_error(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text
    return text


# --- decoding --------------------------------------------------------------------


def test_wav_16bit_22k_resampled_to_48k_keeps_the_tone(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(1000, 2.0, 22050), 22050, subtype="PCM_16")
    wave = read_audio(path, 48000)
    assert wave.sample_rate == 48000 and wave.samples.dtype == np.float32
    assert len(wave.samples) == 96000  # 2 s exactly
    assert peak_hz(wave) == pytest.approx(1000, abs=0.5)  # 0.5 Hz bins over 2 s
    assert wave.rms == pytest.approx(0.5 / np.sqrt(2), rel=0.01)  # no gain change


def test_flac_44k_stereo_is_averaged_to_mono(tmp_path):
    rate = 44100
    left, right = tone(1000, 1.0, rate, amp=0.4), tone(3000, 1.0, rate, amp=0.2)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), rate)
    wave = read_audio(path)  # native rate
    assert wave.sample_rate == rate and wave.samples.ndim == 1
    np.testing.assert_allclose(wave.samples, (left + right) / 2, atol=1e-4)  # 16-bit FLAC
    spec = np.abs(np.fft.rfft(wave.samples))
    freqs = np.fft.rfftfreq(rate, 1 / rate)
    assert sorted(freqs[np.argsort(spec)[-2:]]) == [1000, 3000]
    # Amplitude halves: 0.4 -> 0.2 and 0.2 -> 0.1 (bin magnitude of a sine is A*N/2).
    assert spec[1000] / (rate / 2) == pytest.approx(0.2, rel=0.01)
    assert spec[3000] / (rate / 2) == pytest.approx(0.1, rel=0.01)


@pytest.mark.parametrize(
    "ext,fmt,subtype,rate",
    [
        ("ogg", "OGG", "VORBIS", 44100),
        ("opus", "OGG", "OPUS", 48000),
        ("mp3", "MP3", "MPEG_LAYER_III", 44100),
        ("aiff", "AIFF", "PCM_24", 32000),
    ],
)
def test_lossy_and_other_formats_decode(tmp_path, ext, fmt, subtype, rate):
    if subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {subtype}")
    path = tmp_path / f"tone.{ext}"
    sf.write(path, tone(1000, 2.0, rate, channels=2), rate, format=fmt, subtype=subtype)
    wave = read_audio(path, 48000)
    assert wave.sample_rate == 48000
    assert wave.duration == pytest.approx(2.0, abs=0.06)  # codec padding at most a frame or two
    assert peak_hz(wave) == pytest.approx(1000, abs=1.0)
    assert wave.rms == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_libsndfile_bundled_reads_mp3_and_ogg():
    """What the report says of the soundfile wheel: libsndfile >= 1.1 with MPEG and Vorbis."""
    major, minor = (int(v) for v in sf.__libsndfile_version__.split(".")[:2])
    assert (major, minor) >= (1, 1)
    formats = sf.available_formats()
    assert "MP3" in formats and "OGG" in formats
    assert "VORBIS" in sf.available_subtypes("OGG")


@pytest.mark.parametrize(
    "rate_in,rate_out", [(44100, 16000), (48000, 44100), (8000, 48000), (44101, 48000)]
)
def test_resampling_keeps_1khz_and_length(rate_in, rate_out):
    wave = Waveform(tone(1000, 2.0, rate_in), rate_in).resample(rate_out)
    assert wave.sample_rate == rate_out
    assert abs(len(wave.samples) - 2 * rate_out) <= 1
    assert peak_hz(wave) == pytest.approx(1000, abs=0.5)
    assert wave.rms == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_downsampling_filters_out_tones_above_the_new_nyquist():
    wave = Waveform(tone(10_000, 1.0, 44100), 44100).resample(16000)  # Nyquist 8 kHz
    inner = wave.samples[1600:-1600]  # away from the clip's abrupt start and end
    rms = np.sqrt(np.mean(np.square(inner, dtype=np.float64)))
    assert rms < 1e-5 * (0.5 / np.sqrt(2))  # over 100 dB down: no alias at 6 kHz


def test_block_streamed_resampling_equals_one_shot(tmp_path):
    rate = 44100
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(5 * rate)).astype(np.float32)  # 220 500 frames: 4 blocks
    assert len(x) > 3 * audio.BLOCK_FRAMES
    path = tmp_path / "noise.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    streamed = read_audio(path, 48000)
    whole = Waveform(x, rate).resample(48000)
    assert len(streamed.samples) == len(whole.samples) == 240000
    np.testing.assert_allclose(streamed.samples, whole.samples, atol=1e-6)


def test_truncate_reads_the_first_max_seconds(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(1000, 3.0, 16000), 16000)
    wave = read_audio(path, 48000, max_seconds=1.25, truncate=True)
    assert len(wave.samples) == 60000  # 1.25 s at 48 kHz


# --- waveforms and windows ---------------------------------------------------------


def test_waveform_from_array_scales_int16_and_mixes_channels():
    pcm = np.array([[16384, -16384], [32767, 32767], [-32768, -32768]] * 100, dtype=np.int16)
    wave = Waveform.from_array(pcm, 8000)
    assert wave.samples.dtype == np.float32
    np.testing.assert_allclose(wave.samples[:3], [0.0, 32767 / 32768, -1.0])


@pytest.mark.parametrize("rate", [0, -8000, 44100.5, True, "48000", float("nan")])
def test_waveform_rejects_bad_rates(rate):
    with pytest.raises(InputError):
        Waveform(np.zeros(10, np.float32), rate)


def test_waveform_rejects_multichannel_samples():
    with pytest.raises(InputError, match="mono"):
        Waveform(np.zeros((10, 2), np.float32), 8000)


def test_windows_cover_the_clip_with_an_end_aligned_tail():
    rate = 1000
    wave = Waveform(np.arange(10_000, dtype=np.float32) / 1e4, rate)  # 10 s
    w = windows(wave, 3.0)
    np.testing.assert_array_equal(window_starts(wave, 3.0), [0, 3, 6, 7])
    assert w.shape == (4, 3000)
    np.testing.assert_array_equal(w[3], wave.samples[7000:])  # the last 3 s, not padding
    np.testing.assert_array_equal(w[1], wave.samples[3000:6000])
    # With a 1.5 s hop: 0, 1.5, ... 6, then the end-aligned 7.
    np.testing.assert_array_equal(window_starts(wave, 3.0, hop=1.5), [0, 1.5, 3, 4.5, 6, 7])
    # Exactly one window long: no extra window.
    np.testing.assert_array_equal(
        window_starts(Waveform(wave.samples[:9000], rate), 3.0), [0, 3, 6]
    )


def test_short_clip_is_zero_padded_to_one_window():
    wave = Waveform(np.ones(1200, np.float32), 1000)
    w = windows(wave, 3.0)
    assert w.shape == (1, 3000)
    assert w[0, :1200].sum() == 1200 and not w[0, 1200:].any()


@pytest.mark.parametrize("seconds,hop", [(0, None), (-1, None), (3.0, 0), (3.0, float("inf"))])
def test_windows_reject_bad_lengths(seconds, hop):
    with pytest.raises(InputError):
        windows(Waveform(np.ones(100, np.float32), 100), seconds, hop)


# --- bad input: one line each --------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as err:
        read_audio(tmp_path / "nope.wav")
    assert "not found" in one_line_error(err)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(InputError, match="not an audio file"):
        read_audio(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(InputError) as err:
        read_audio(path)
    assert "empty (0 bytes)" in one_line_error(err)


def test_header_without_samples(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError) as err:
        read_audio(path, 48000)
    assert "no samples" in one_line_error(err)


def test_random_bytes_are_not_audio(tmp_path):
    path = tmp_path / "junk.wav"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputError) as err:
        read_audio(path)
    assert "not a readable audio file" in one_line_error(err)


def test_truncated_flac_is_corrupt(tmp_path):
    path = tmp_path / "cut.flac"
    rng = np.random.default_rng(2)
    sf.write(path, (0.3 * rng.standard_normal(44100 * 3)).astype(np.float32), 44100)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError) as err:
        read_audio(path)
    assert "corrupt or truncated" in one_line_error(err)


@pytest.mark.parametrize(
    "head,codec",
    [
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "MP4/M4A"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81", "WebM"),
    ],
)
def test_unsupported_codecs_are_named(tmp_path, head, codec):
    path = tmp_path / "clip.m4a"
    path.write_bytes(head + bytes(2000))
    with pytest.raises(InputError) as err:
        read_audio(path)
    text = one_line_error(err)
    assert codec in text and "not supported" in text


@pytest.mark.parametrize("amp", [0.0, 2e-5])
def test_silent_clip(tmp_path, amp):
    path = tmp_path / "quiet.wav"
    x = amp * np.random.default_rng(3).standard_normal(16000)
    sf.write(path, x.astype(np.float32), 16000, subtype="FLOAT")
    with pytest.raises(InputError) as err:
        read_audio(path)
    assert "silent" in one_line_error(err) and "-80 dBFS" in str(err.value)


def test_nan_samples(tmp_path):
    path = tmp_path / "nan.wav"
    x = tone(1000, 0.5, 16000)
    x[100] = np.nan
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN"):
        read_audio(path)


def test_clip_over_the_default_limit_fails_before_decoding(tmp_path):
    path = tmp_path / "hour.wav"
    rate = 2000  # small file, long duration: 601 s
    sf.write(path, tone(100, audio.MAX_SECONDS + 1, rate), rate, subtype="PCM_16")
    with pytest.raises(InputError) as err:
        read_audio(path, 48000)
    text = one_line_error(err)
    assert "601 s long" in text and "limit is 600 s" in text and "shorter clip" in text and "truncate" not in text


def test_clip_over_a_given_limit(tmp_path):
    path = tmp_path / "two.ogg"
    sf.write(path, tone(1000, 2.0, 44100), 44100, format="OGG", subtype="VORBIS")
    with pytest.raises(InputError, match="limit is 1 s"):
        read_audio(path, max_seconds=1)
    with pytest.raises(InputError, match="max_seconds"):
        read_audio(path, max_seconds=0)


def test_missing_soundfile_is_a_data_error(tmp_path, monkeypatch):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(1000, 0.5, 16000), 16000)
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import now raises ImportError
    with pytest.raises(DataError, match=r"pip install 'omnimap\[sound\]'"):
        read_audio(path)
