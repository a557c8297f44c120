"""``omnimap example sound --workdir DIR``: sound and species maps offline, end to end.

1. a synthetic recording made with numpy (rising chirps over brown noise, 20 s at
   22.05 kHz), written as FLAC;
2. decoded, resampled to 48 kHz and cut into BirdNET's 3 s windows by the real code,
   and analysed by BirdNET (what it hears in each window);
3. "where could I hear this at dawn in May?": its map over Europe;
4. what one would hear in Zurich at dawn in May (``listen``);
5. the barn swallow's maps for a winter and a summer week, as a two-band COG.

The clip is not a bird (BirdNET hears little in it); the point is that every piece
runs end to end on the same code as a field recording. Needs the sound extra.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnimap.api import get_engine, map_grid
from omnimap.core.fileio import write_json_atomic
from omnimap.maps.sound import (
    listen,
    sound_map,
    soundscape_teacher,
    species_maps,
    week_when,
    when_of,
    write_weeks_cog,
)  # fmt: skip
from omnimap.media.audio import read_audio
from omnimap.teachers.birdnet import BirdNetTeacher

EUROPE = "-12,35,35,62"
WHEN = "2024-05-15T05:00"  # local solar time: dawn in mid-May
ZURICH = (8.54, 47.37)


def chirps(seconds: float = 20.0, rate: int = 22_050, seed: int = 0) -> tuple[np.ndarray, int]:
    """Rising 3-8 kHz chirps every 1.3 s over brown noise: mono float32 samples, rate."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.cumsum(np.random.default_rng(seed).standard_normal(len(t)))
    noise -= np.linspace(noise[0], noise[-1], len(t))  # no drift
    x = 0.02 * noise / noise.std()
    for start in np.arange(0.4, seconds - 0.6, 1.3):
        m = (t >= start) & (t < start + 0.3)
        f = 3000 + 16_000 * (t[m] - start)
        x[m] += 0.3 * np.sin(2 * np.pi * np.cumsum(f) / rate) * np.hanning(m.sum())
    return x.astype(np.float32), rate


def run(workdir: str | Path, model: str = "soundscape", resolution: float = 0.5) -> dict:
    import soundfile as sf  # the sound extra: imported where it is needed

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    samples, rate = chirps()
    clip_path = work / "chirps.flac"
    sf.write(clip_path, samples, rate)
    clip = read_audio(clip_path)
    analysis = BirdNetTeacher().analyze(clip)
    heard = [f"{d.start:.0f}-{d.end:.0f} s: {d.species} ({d.probability:.2f})"
             for d in analysis.detections(min_probability=0.1, top_k=1)]  # fmt: skip

    engine = get_engine(model)
    soundscape_teacher(engine)  # a text model is refused here, before any map
    grid, label, _ = map_grid(engine, EUROPE, None, resolution)
    moment = when_of(WHEN)
    where = sound_map(engine, clip, grid, moment, "sound of chirps.flac", label).write(
        work / "where.tif"
    )
    there = listen(engine, *ZURICH, moment, k=5)
    weeks = [6, 30]
    cube, title = species_maps(engine, "Hirundo rustica", grid, [week_when(w) for w in weeks])
    cog = write_weeks_cog(work / "swallow-weeks.tif", cube, grid, weeks,
                          {"prompt": title, "model": engine.name, "licence": engine.teacher.licence})  # fmt: skip
    summary = {"clip_seconds": clip.duration, "windows": len(analysis.starts), "birdnet_heard": heard,
               "listen": there, "swallow_mean_by_week": {str(w): float(np.nanmean(c)) for w, c in zip(weeks, cube, strict=True)}}  # fmt: skip
    write_json_atomic(work / "summary.json", summary)
    return {"summary": summary, "where": where, "swallow": cog, "json": work / "summary.json"}
