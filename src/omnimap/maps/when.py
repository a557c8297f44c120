"""When was this observed? A query's scores over the 24 local solar hours x 12 months at
one place (the student's embedding there at each time, through the one scoring
function), the posterior over them, and timestamp verification (how a claimed time
ranks among all the others).

A soundscape model learnt BirdNET's weeks (four to a month), so its posterior is over
24 hours x 48 weeks (the middle day of each, ``weekly=True``): which weeks make what
was heard most likely; the months are then sums of their four weeks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from omnimap.core.errors import InputError
from omnimap.datasets.gallery import check_coordinates
from omnimap.datasets.soundscape import WEEK_MID_DAY, WEEKS
from omnimap.geo.timefeat import LocalTime, When, local_times
from omnimap.maps.engine import MapEngine
from omnimap.maps.scoring import cosine_scores

HOURS, MONTHS = 24, 12
DAY_OF_MONTH = 15
DEFAULT_TEMPERATURE = 0.02  # softmax over the 288 times


def period_days(weekly: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(month, day) of each period's day: the 15th of each month, or the middle day of
    each BirdNET week."""
    if not weekly:
        return np.arange(1, MONTHS + 1), np.full(MONTHS, DAY_OF_MONTH)
    week = np.arange(WEEKS)
    return week // 4 + 1, np.asarray(WEEK_MID_DAY)[week % 4]


def _slots(year: int, weekly: bool = False) -> LocalTime:
    months, days = period_days(weekly)
    month, day = np.repeat(months, HOURS), np.repeat(days, HOURS)
    hour = np.tile(np.arange(HOURS) + 0.5, len(months))
    dates = np.array(
        [f"{year:04d}-{m:02d}-{d:02d}" for m, d in zip(month, day, strict=True)],
        dtype="datetime64[D]",
    )
    doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64) + 1
    return LocalTime(np.full(len(month), year), month, day, hour, doy)


def time_scores(engine: MapEngine, q: np.ndarray, lon: float, lat: float, year: int = 2020,
                overhead: np.ndarray | None = None, weekly: bool = False) -> np.ndarray:  # fmt: skip
    """(12, 24) cosine scores of query vector ``q`` at (lon, lat) at the middle of each
    local solar hour of the 15th of each month; ``weekly``: (48, 24), on the middle day
    of each BirdNET week."""
    check_coordinates([lon], [lat])
    periods = WEEKS if weekly else MONTHS
    n = periods * HOURS
    lons, lats = np.full(n, float(lon)), np.full(n, float(lat))
    o = engine.embedder.overhead(lons[:1], lats[:1]) if overhead is None else overhead
    cells = engine.embedder.fused(
        lons, lats, _slots(year, weekly), "full", overhead=np.repeat(o, n, axis=0)
    )
    return cosine_scores(cells.astype(np.float16), np.atleast_2d(q))[0].reshape(periods, HOURS)


@dataclass
class TimePosterior:
    scores: np.ndarray  # (12, 24), or (48, 24) by BirdNET week
    prob: np.ndarray  # the same shape, sums to 1
    lon: float
    lat: float
    query: str

    @property
    def weekly(self) -> bool:
        return len(self.prob) == WEEKS

    @property
    def hour(self) -> np.ndarray:
        return self.prob.sum(axis=0)

    @property
    def month(self) -> np.ndarray:
        by_period = self.prob.sum(axis=1)
        return by_period.reshape(MONTHS, 4).sum(axis=1) if self.weekly else by_period

    @property
    def week(self) -> np.ndarray | None:
        """(48,) by BirdNET week (weekly posteriors only)."""
        return self.prob.sum(axis=1) if self.weekly else None

    def to_json(self) -> dict:
        data = {
            "query": self.query, "lon": self.lon, "lat": self.lat,
            "best_hour": int(self.hour.argmax()), "best_month": int(self.month.argmax()) + 1,
            "hour": [round(float(p), 6) for p in self.hour],
            "month": [round(float(p), 6) for p in self.month],
        }  # fmt: skip
        if self.weekly:
            data["best_week"] = int(self.week.argmax()) + 1
            data["week"] = [round(float(p), 6) for p in self.week]
        return data

    def figure(self):
        from matplotlib.figure import Figure  # on use: plotting only here

        fig = Figure(figsize=(10, 3.2), dpi=100)
        a, b = fig.subplots(1, 2)
        a.bar(np.arange(HOURS), self.hour, color="#3b6ea5")
        a.set_xlabel("local solar hour")
        a.set_ylabel("probability")
        if self.weekly:
            b.bar(np.arange(1, WEEKS + 1), self.week, color="#c0703a")
            b.set_xlabel("BirdNET week (four to a month)")
        else:
            b.bar(np.arange(1, MONTHS + 1), self.month, color="#c0703a")
            b.set_xlabel("month")
        fig.suptitle(f'when: "{self.query[:70]}" at {self.lon:.2f}, {self.lat:.2f}')
        fig.tight_layout()
        return fig


def weekly_model(engine: MapEngine) -> bool:
    """Whether the model learnt BirdNET weeks (a soundscape teacher's targets)."""
    return engine.model.config.get("teacher", {}).get("kind") == "soundscape"


def time_posterior(engine: MapEngine, q: np.ndarray, lon: float, lat: float, query: str = "",
                   year: int = 2020, temperature: float = DEFAULT_TEMPERATURE,
                   weekly: bool | None = None) -> TimePosterior:  # fmt: skip
    """The posterior over hours x months (``weekly``: x BirdNET weeks; default: weekly
    for a soundscape model)."""
    weekly = weekly_model(engine) if weekly is None else weekly
    scores = time_scores(engine, q, lon, lat, year, weekly=weekly)
    logits = scores / temperature
    return TimePosterior(scores, np.exp(logits - logsumexp(logits)), float(lon), float(lat), query)


def verify_time(engine: MapEngine, q: np.ndarray, lon: float, lat: float, when: When) -> dict:
    """The score at the claimed time and its rank among all 288 hour x month slots (1 = best)."""
    if when is None:
        raise InputError("--when is required: the time to verify")
    local = local_times(when, np.array([float(lon)]))
    scores = time_scores(engine, q, lon, lat, int(local.year[0]))
    m, h = int(local.month[0]) - 1, int(local.hour[0]) % HOURS
    claimed = float(scores[m, h])
    rank = int((scores > claimed).sum()) + 1
    return {"score": claimed, "rank": rank, "of": int(scores.size),
            "hour_rank": int((scores[m] > claimed).sum()) + 1,
            "month_rank": int((scores[:, h] > claimed).sum()) + 1,
            "percentile": float(100 * (scores.size - rank) / (scores.size - 1))}  # fmt: skip
