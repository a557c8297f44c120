"""Read a user's sound clip into mono float32 samples at a chosen rate.

Decoding is libsndfile through ``soundfile`` (BSD-3-Clause; its wheels bundle
libsndfile 1.2.x built with FLAC, Ogg Vorbis/Opus and MPEG layer I-III), so WAV, FLAC,
MP3, OGG, AIFF and the other libsndfile formats read the same way. AAC/M4A, WebM and
WMA are not decodable by libsndfile and are refused with a message saying so.

Resampling is libsoxr through ``soxr`` (LGPL-2.1-or-later, used unmodified as a
separate library), at its "HQ" setting. Chosen over scipy's ``resample_poly``
because it streams (the file is decoded and resampled block by block with the same
output as one call on the whole clip) and handles any pair of rates at the same cost,
whereas a polyphase filter for e.g. 44 101 -> 48 000 Hz needs up/down factors of
48 000/44 101.

Both are optional (``pip install 'omnimap[sound]'``); ``Waveform`` itself needs only
NumPy, so a teacher can be handed samples that were decoded elsewhere.

Long clips are refused by default (``InputError`` naming the limit) rather than cut:
a map of "sounds like this clip" must not silently describe only its first minutes.
``truncate=True`` reads the first ``max_seconds`` instead.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimap.core.errors import DataError, InputError

MAX_SECONDS = 600.0  # 10 minutes: 115 MB of float32 at 48 kHz, ~200 BirdNET windows
SILENCE_RMS = 1e-4  # -80 dBFS: above 16-bit dither (~-101 dBFS), below any field recording
BLOCK_FRAMES = 1 << 16  # frames decoded per read (~1.5 s at 44.1 kHz)
RESAMPLE_QUALITY = "HQ"  # libsoxr "high quality": 20-bit precision, 95% passband
SUPPORTED = "WAV, FLAC, MP3, OGG (Vorbis/Opus), AIFF"
INSTALL_HINT = "install the optional extra: pip install 'omnimap[sound]'"


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare to one bool
class Waveform:
    """A mono clip: float32 samples (nominally in [-1, 1]) and their rate in Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self):
        samples = np.ascontiguousarray(self.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise InputError(f"a Waveform is mono: expected 1-D samples, got shape {samples.shape}")
        rate = _rate(self.sample_rate, "sample_rate")
        object.__setattr__(self, "samples", samples)
        object.__setattr__(self, "sample_rate", rate)

    @classmethod
    def from_array(cls, samples, sample_rate: int) -> Waveform:
        """From (n,) or (n, channels) samples (channels are averaged); checks that
        there is sound, and that every sample is finite."""
        arr = np.asarray(samples)
        if arr.ndim not in (1, 2):
            raise InputError(f"expected (n,) or (n, channels) samples, got shape {arr.shape}")
        if np.issubdtype(arr.dtype, np.integer):  # PCM integers -> [-1, 1)
            arr = arr / float(-np.iinfo(arr.dtype).min)
        if arr.ndim == 2:
            arr = arr.mean(axis=1, dtype=np.float64)
        wave = cls(arr, sample_rate)
        if len(wave.samples) == 0:
            raise InputError("the clip has no samples")
        if not np.isfinite(wave.samples).all():
            raise InputError("the clip has NaN or infinite samples")
        _check_level(wave.rms**2, "samples")
        return wave

    @property
    def duration(self) -> float:
        """Seconds."""
        return len(self.samples) / self.sample_rate

    @property
    def rms(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.samples, dtype=np.float64))))

    def resample(self, rate: int) -> Waveform:
        """The same clip at ``rate`` Hz (libsoxr HQ); itself if already there."""
        rate = _rate(rate, "rate")
        if rate == self.sample_rate:
            return self
        soxr = _soxr()
        out = soxr.resample(self.samples, self.sample_rate, rate, quality=RESAMPLE_QUALITY)
        return Waveform(out, rate)


def read_audio(
    path: str | os.PathLike,
    target_rate: int | None = None,
    *,
    max_seconds: float = MAX_SECONDS,
    truncate: bool = False,
) -> Waveform:
    """Decode ``path`` into a mono ``Waveform`` at ``target_rate`` (default: the
    file's own rate), block by block.

    Channels are averaged. A clip longer than ``max_seconds`` is an ``InputError``
    unless ``truncate``, which keeps its first ``max_seconds``. Missing, empty,
    undecodable, unsupported and silent files are ``InputError`` s too.
    """
    path = Path(path)
    if not (
        isinstance(max_seconds, int | float) and math.isfinite(max_seconds) and max_seconds > 0
    ):
        raise InputError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    rate_out = None if target_rate is None else _rate(target_rate, "target_rate")
    _check_file(path)
    sf = _soundfile()
    try:
        handle = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError) as exc:
        reason = _reason(exc)
        if "does not exist" in reason:  # what libsndfile says when no decoder took it
            reason = "unrecognised or corrupt data"
        raise InputError(
            f"{path.name}: not a readable audio file ({reason}); readable: {SUPPORTED}"
        ) from None
    with handle:
        rate_in, channels = int(handle.samplerate), int(handle.channels)
        if rate_in <= 0 or channels <= 0:
            raise InputError(
                f"{path.name}: corrupt audio header ({rate_in} Hz, {channels} channels)"
            )
        limit = int(max_seconds * rate_in)
        # The header's frame count is exact for WAV/FLAC and an estimate for MP3/OGG;
        # it lets an over-long file fail before any decoding. The loop re-checks.
        if handle.frames > limit and not truncate:
            raise _too_long(path, handle.frames / rate_in, max_seconds)
        stream = None
        if rate_out is not None and rate_out != rate_in:
            stream = _soxr().ResampleStream(
                rate_in, rate_out, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )
        chunks, total, energy = [], 0, 0.0
        while True:
            try:
                block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as exc:
                raise InputError(
                    f"{path.name}: corrupt or truncated audio at {total / rate_in:.1f} s ({_reason(exc)})"
                ) from None
            n = len(block)
            if n and total + n > limit:
                if not truncate:
                    raise _too_long(path, None, max_seconds)
                block, n = block[: limit - total], limit - total
            mono = block[:, 0] if channels == 1 else block.mean(axis=1, dtype=np.float32)
            if n and not np.isfinite(mono).all():
                raise InputError(f"{path.name}: the audio has NaN or infinite samples")
            # Not np.dot: float64 BLAS on small vectors took 16 ms a block on a busy box.
            energy += float(np.square(mono, dtype=np.float64).sum())
            total += n
            last = n == 0 or (truncate and total >= limit)
            chunks.append(mono if stream is None else stream.resample_chunk(mono, last=last))
            if last:
                break
    if total == 0:
        raise InputError(f"{path.name}: the audio file has no samples")
    _check_level(energy / total, path.name)
    samples = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return Waveform(samples, rate_out or rate_in)


def window_starts(waveform: Waveform, seconds: float = 3.0, hop: float | None = None) -> np.ndarray:
    """Start times (s) of the windows that ``windows`` cuts, same arguments."""
    starts, _ = _window_plan(len(waveform.samples), waveform.sample_rate, seconds, hop)
    return starts / waveform.sample_rate


def windows(waveform: Waveform, seconds: float = 3.0, hop: float | None = None) -> np.ndarray:
    """(n, round(seconds * rate)) float32 windows every ``hop`` seconds (default:
    ``seconds``, no overlap).

    Every sample is covered and no silence is invented where there is audio: when the
    clip does not end on a window boundary, the last window is the clip's final
    ``seconds`` (it overlaps the one before). Only a clip shorter than one window is
    padded, with zeros after it (the BirdNET convention for short chunks).
    """
    x = waveform.samples
    starts, length = _window_plan(len(x), waveform.sample_rate, seconds, hop)
    if len(x) < length:
        out = np.zeros((1, length), dtype=np.float32)
        out[0, : len(x)] = x
        return out
    return np.lib.stride_tricks.sliding_window_view(x, length)[starts].copy()


def _window_plan(n: int, rate: int, seconds: float, hop: float | None) -> tuple[np.ndarray, int]:
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
        raise InputError(f"window seconds must be positive, got {seconds!r}")
    hop = seconds if hop is None else hop
    if not (isinstance(hop, int | float) and math.isfinite(hop) and hop > 0):
        raise InputError(f"window hop must be positive seconds, got {hop!r}")
    length = max(1, round(seconds * rate))
    step = max(1, round(hop * rate))
    if n == 0:
        raise InputError("the clip has no samples")
    if n <= length:
        return np.zeros(1, dtype=np.int64), length
    starts = np.arange(0, n - length + 1, step, dtype=np.int64)
    if starts[-1] + length < n:  # uncovered tail: one end-aligned window
        starts = np.append(starts, n - length)
    return starts, length


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"audio file not found: {path}")
    if not path.is_file():
        raise InputError(f"not an audio file (a directory or device): {path}")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path.name}: the audio file is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(12)
    codec = _unsupported_container(head)
    if codec:
        raise InputError(
            f"{path.name}: {codec} is not supported; convert it to FLAC, WAV or MP3 "
            f"(e.g. ffmpeg -i {path.name} clip.flac)"
        )


def _unsupported_container(head: bytes) -> str | None:
    """Containers libsndfile cannot open, recognised by their magic bytes so the user
    is told the codec rather than "format not recognised"."""
    if head[4:8] == b"ftyp":
        return "MP4/M4A audio (AAC or ALAC)"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "WebM/Matroska audio"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "WMA/ASF audio"
    if head.startswith(b"#!AMR"):
        return "AMR audio"
    return None


def _check_level(mean_square: float, what: str) -> None:
    rms = math.sqrt(max(mean_square, 0.0))
    if rms < SILENCE_RMS:
        level = "-inf" if rms == 0 else f"{20 * math.log10(rms):.0f}"
        raise InputError(
            f"{what}: the clip is silent (RMS {level} dBFS, below "
            f"{20 * math.log10(SILENCE_RMS):.0f} dBFS)"
        )


def _too_long(path: Path, seconds: float | None, limit: float) -> InputError:
    length = f" is {seconds:.0f} s long;" if seconds is not None else " is longer than the limit;"
    return InputError(
        f"{path.name}{length} the limit is {limit:.0f} s; use a shorter clip "
        f"(e.g. its first {limit:.0f} s)"
    )


def _reason(exc: BaseException) -> str:
    # LibsndfileError keeps libsndfile's own words apart from soundfile's prefix.
    text = str(getattr(exc, "error_string", "") or exc).strip().rstrip(".")
    return text.splitlines()[0] if text else type(exc).__name__


def _rate(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer | float | np.floating):
        raise InputError(f"{what} must be a positive whole number of Hz, got {value!r}")
    if not (math.isfinite(value) and value > 0 and float(value).is_integer()):
        raise InputError(f"{what} must be a positive whole number of Hz, got {value!r}")
    return int(value)


def _soundfile():
    try:
        import soundfile
    except (ImportError, OSError) as exc:  # OSError: the bundled libsndfile failed to load
        raise DataError(f"reading audio needs soundfile; {INSTALL_HINT} ({_reason(exc)})") from None
    return soundfile


def _soxr():
    try:
        import soxr
    except ImportError:
        raise DataError(f"resampling audio needs soxr; {INSTALL_HINT}") from None
    return soxr
