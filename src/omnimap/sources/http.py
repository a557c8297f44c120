"""Polite HTTP for tile servers: a User-Agent naming omnimap, a rate limit shared by
all requests of a source, and bounded retries with exponential backoff on timeouts,
connection errors, 5xx and 429 (other 4xx mean the tile will not come: no retry)."""

from __future__ import annotations

import random
import threading
import time
from importlib import metadata

import httpx

from omnimap.core.errors import InputError

FALLBACK_URL = "https://pypi.org/project/omnimap/"


class FetchError(Exception):
    """A URL could not be fetched; the message says why, in words."""


def user_agent() -> str:
    """``omnimap/<version> (+<project url>)``, as tile usage policies ask."""
    url = FALLBACK_URL
    try:
        for entry in metadata.metadata("omnimap").get_all("Project-URL") or []:
            label, _, value = entry.partition(",")
            if label.strip().lower() in ("homepage", "home", "source", "repository"):
                url = value.strip()
                break
    except metadata.PackageNotFoundError:
        pass
    return f"omnimap/{metadata.version('omnimap')} (+{url})"


class RateLimiter:
    """At most ``rate`` starts per second, evenly spaced, across threads."""

    def __init__(self, rate: float):
        if not rate > 0:
            raise InputError(f"requests per second must be positive, got {rate}")
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: use the backoff


class HttpFetcher:
    def __init__(
        self,
        *,
        requests_per_second: float,
        timeout_s: float,
        max_attempts: int,
        backoff_s: float,
        max_backoff_s: float = 60.0,
    ):
        if max_attempts < 1:
            raise InputError("max_attempts must be at least 1")
        self.limiter = RateLimiter(requests_per_second)
        self.max_attempts = int(max_attempts)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._client = httpx.Client(
            headers={"User-Agent": user_agent()}, timeout=timeout_s, follow_redirects=True
        )

    def get(self, url: str) -> bytes:
        """The body of a 200 response, or FetchError."""
        reason = "not attempted"
        for attempt in range(self.max_attempts):
            self.limiter.wait()
            wait = None
            try:
                response = self._client.get(url)
            except httpx.TimeoutException:
                reason = "timed out"
            except httpx.TransportError as exc:
                reason = f"connection failed ({type(exc).__name__})"
            else:
                if response.status_code == 200:
                    return response.content
                reason = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    raise FetchError(reason)
                wait = _retry_after(response)
            if attempt + 1 < self.max_attempts:
                # Exponential backoff with jitter, so many clients do not retry in step.
                backoff = self.backoff_s * 2**attempt * random.uniform(0.5, 1.0)
                time.sleep(min(self.max_backoff_s, backoff if wait is None else wait))
        raise FetchError(f"{reason} ({self.max_attempts} attempts)")

    def close(self) -> None:
        self._client.close()
