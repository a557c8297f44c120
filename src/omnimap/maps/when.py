"""When was this observed? A query's scores over the 24 local solar hours x 12 months at
one place (the student's embedding there at each time, through the one scoring
function), the posterior over them, and timestamp verification (how a claimed time
ranks among all the others)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from omnimap.core.errors import InputError
from omnimap.datasets.gallery import check_coordinates
from omnimap.geo.timefeat import LocalTime, When, local_times
from omnimap.maps.engine import MapEngine
from omnimap.maps.scoring import cosine_scores

HOURS, MONTHS = 24, 12
DAY_OF_MONTH = 15
DEFAULT_TEMPERATURE = 0.02  # softmax over the 288 times


def _slots(year: int) -> LocalTime:
    month = np.repeat(np.arange(1, MONTHS + 1), HOURS)
    hour = np.tile(np.arange(HOURS) + 0.5, MONTHS)
    dates = np.array(
        [f"{year:04d}-{m:02d}-{DAY_OF_MONTH:02d}" for m in month], dtype="datetime64[D]"
    )
    doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64) + 1
    n = len(month)
    return LocalTime(np.full(n, year), month, np.full(n, DAY_OF_MONTH), hour, doy)


def time_scores(engine: MapEngine, q: np.ndarray, lon: float, lat: float, year: int = 2020,
                overhead: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """(12, 24) cosine scores of query vector ``q`` at (lon, lat) at the middle of each
    local solar hour of the 15th of each month."""
    check_coordinates([lon], [lat])
    n = MONTHS * HOURS
    lons, lats = np.full(n, float(lon)), np.full(n, float(lat))
    o = engine.embedder.overhead(lons[:1], lats[:1]) if overhead is None else overhead
    cells = engine.embedder.fused(
        lons, lats, _slots(year), "full", overhead=np.repeat(o, n, axis=0)
    )
    return cosine_scores(cells.astype(np.float16), np.atleast_2d(q))[0].reshape(MONTHS, HOURS)


@dataclass
class TimePosterior:
    scores: np.ndarray  # (12, 24)
    prob: np.ndarray  # (12, 24), sums to 1
    lon: float
    lat: float
    query: str

    @property
    def hour(self) -> np.ndarray:
        return self.prob.sum(axis=0)

    @property
    def month(self) -> np.ndarray:
        return self.prob.sum(axis=1)

    def to_json(self) -> dict:
        return {
            "query": self.query, "lon": self.lon, "lat": self.lat,
            "best_hour": int(self.hour.argmax()), "best_month": int(self.month.argmax()) + 1,
            "hour": [round(float(p), 6) for p in self.hour],
            "month": [round(float(p), 6) for p in self.month],
        }  # fmt: skip

    def figure(self):
        from matplotlib.figure import Figure  # on use: plotting only here

        fig = Figure(figsize=(10, 3.2), dpi=100)
        a, b = fig.subplots(1, 2)
        a.bar(np.arange(HOURS), self.hour, color="#3b6ea5")
        a.set_xlabel("local solar hour")
        a.set_ylabel("probability")
        b.bar(np.arange(1, MONTHS + 1), self.month, color="#c0703a")
        b.set_xlabel("month")
        fig.suptitle(f'when: "{self.query[:70]}" at {self.lon:.2f}, {self.lat:.2f}')
        fig.tight_layout()
        return fig


def time_posterior(engine: MapEngine, q: np.ndarray, lon: float, lat: float, query: str = "",
                   year: int = 2020, temperature: float = DEFAULT_TEMPERATURE) -> TimePosterior:  # fmt: skip
    scores = time_scores(engine, q, lon, lat, year)
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
