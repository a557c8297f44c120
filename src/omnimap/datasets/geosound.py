"""Geotagged audio pairs (the GeoSound / SoundingEarth layout): one row per clip.

A CSV or Parquet table with columns ``audio`` (a path relative to the table's folder),
``lon``, ``lat`` (WGS84 degrees), and optionally ``time`` (ISO local date-time),
``source`` (e.g. freesound, aporee, iNaturalist) and ``caption`` (free text about the
sound). Rows with a bad location are an error naming the row; nothing is guessed.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from omnimap.core.errors import InputError
from omnimap.geo.timefeat import LocalTime, metadata_features, split_datetime64
from omnimap.media.audio import read_audio

REQUIRED = ("audio", "lon", "lat")


@dataclass
class AudioPairs:
    root: Path  # the table's folder
    audio: list[str]
    lon: np.ndarray  # (N,) float64
    lat: np.ndarray
    time: list[str | None]  # ISO local date-times
    source: list[str]
    caption: list[str | None]

    def __len__(self) -> int:
        return len(self.audio)

    def path(self, row: int) -> Path:
        return self.root / self.audio[row]

    def local_time(self) -> tuple[LocalTime, np.ndarray]:
        """Local times (unknown ones at a placeholder) and a mask of the known ones."""
        known = np.array([t is not None for t in self.time])
        stamps = np.array([np.datetime64(t or "2020-01-01T00:00:00", "ms") for t in self.time])
        return split_datetime64(stamps), known

    def metadata(self) -> np.ndarray:
        """(N, 12) model inputs; the time features are zero where the time is unknown."""
        local, known = self.local_time()
        meta = metadata_features(self.lon, self.lat, local)
        meta[~known, 4:] = 0.0
        return meta


def _rows(path: Path) -> list[dict]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read audio pairs table {path}: {exc}") from None


def open_audio_pairs(path: str | Path) -> AudioPairs:
    """Read and check a pairs table (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio pairs table {path} does not exist")
    rows = _rows(path)
    if not rows:
        raise InputError(f"audio pairs table {path} has no rows")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise InputError(f"audio pairs table {path} lacks column(s) {', '.join(missing)}")
    lon, lat, time = [], [], []
    for i, r in enumerate(rows):
        try:
            x, y = float(r["lon"]), float(r["lat"])
        except (TypeError, ValueError):
            raise InputError(f"row {i + 1}: lon/lat must be numbers") from None
        if not (math.isfinite(x) and math.isfinite(y) and abs(x) <= 180 and abs(y) <= 90):
            raise InputError(f"row {i + 1}: lon/lat out of range ({x}, {y})")
        t = (r.get("time") or "").strip() or None
        if t is not None:
            try:
                t = datetime.fromisoformat(t).replace(tzinfo=None).isoformat(timespec="seconds")
            except ValueError:
                raise InputError(f"row {i + 1}: time {t!r} is not ISO-8601") from None
        lon.append(x)
        lat.append(y)
        time.append(t)
    return AudioPairs(
        root=path.resolve().parent, audio=[str(r["audio"]) for r in rows],
        lon=np.asarray(lon), lat=np.asarray(lat), time=time,
        source=[str(r.get("source") or "") for r in rows],
        caption=[(str(r["caption"]).strip() or None) if r.get("caption") else None for r in rows],
    )  # fmt: skip


def clap_vectors(teacher, data: AudioPairs, progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D) unit audio vectors, (N, D) unit caption vectors (zero rows where a clip has
    no caption) and (N,) bool: which rows have a caption."""
    clips = [read_audio(data.path(i)) for i in range(len(data))]
    audio = teacher.embed("audio", clips, progress)
    has = np.array([bool(c) for c in data.caption], dtype=bool)
    text = np.zeros_like(audio)
    if has.any():
        text[has] = teacher.embed("text", [data.caption[i] for i in np.flatnonzero(has)])
    return audio.astype(np.float32), text.astype(np.float32), has


def clap_targets(teacher, data: AudioPairs, caption_weight: float, progress: bool) -> np.ndarray:
    """(N, D) unit targets: each clip's audio vector, mixed with its caption's."""
    audio, text, has = clap_vectors(teacher, data, progress)
    out = audio.copy()
    if has.any() and caption_weight > 0:
        out[has] = (1 - caption_weight) * audio[has] + caption_weight * text[has]
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
