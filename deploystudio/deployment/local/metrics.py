"""Per-deployment request counters, latency percentiles and request history kept by an
endpoint's front.

Counts are totals since the front started; latency percentiles cover a rolling window (the last
1,000 requests, and none older than 5 minutes), so a page polling them sees recent behaviour.
The history keeps the last hour in 10-second buckets (requests, errors, latency percentiles),
so the page's charts show the requests made before it was opened, not only those it sampled.
Everything here runs on the front's event loop thread: no locks.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

WINDOW_REQUESTS = 1_000
WINDOW_SECONDS = 300.0
PERCENTILES = (50, 90, 99)
MAX_ERROR_MESSAGE = 500
HISTORY_BUCKET_SECONDS = 10
HISTORY_BUCKETS = 360  # one hour
# Latencies kept per bucket for its percentiles: bounds a busy hour's memory (360 x 256
# doubles, 0.7 MB per deployment) while a bucket's p99 stays meaningful.
LATENCIES_PER_BUCKET = 256
# Statuses the front answers itself (not the model server).
FRONT_STATUSES = (401, 404, 408, 413, 424, 503)


def percentiles(samples_ms: list[float]) -> dict[str, float | None]:
    """p50/p90/p99 of `samples_ms` (linear interpolation, as numpy's default), None if empty."""
    if not samples_ms:
        return {f"p{p}": None for p in PERCENTILES}
    values = np.percentile(np.asarray(samples_ms, dtype=float), PERCENTILES)
    return {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, values, strict=True)}


@dataclass
class LatencyWindow:
    """The latest request latencies, bounded by count and by age."""

    max_requests: int = WINDOW_REQUESTS
    max_age_seconds: float = WINDOW_SECONDS
    _samples: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, latency_ms: float, now: float | None = None) -> None:
        self._samples.append((time.monotonic() if now is None else now, latency_ms))
        if len(self._samples) > self.max_requests:
            self._samples.popleft()

    def values(self, now: float | None = None) -> list[float]:
        cutoff = (time.monotonic() if now is None else now) - self.max_age_seconds
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        return [latency for _, latency in self._samples]


@dataclass
class HistoryBucket:
    start: float  # wall-clock seconds (the page's time axis)
    requests: int = 0
    mirrored: int = 0
    errors: int = 0
    latencies: array = field(default_factory=lambda: array("d"))


@dataclass
class RequestHistory:
    """What one deployment served, per 10-second bucket, for the last hour. Only buckets that
    saw a request are kept: an idle hour costs nothing."""

    bucket_seconds: int = HISTORY_BUCKET_SECONDS
    max_buckets: int = HISTORY_BUCKETS
    _buckets: deque[HistoryBucket] = field(default_factory=deque)

    def add(
        self, *, error: bool, mirrored: bool, latency_ms: float | None, now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        start = now - now % self.bucket_seconds
        if not self._buckets or self._buckets[-1].start != start:
            self._buckets.append(HistoryBucket(start))
        bucket = self._buckets[-1]
        bucket.requests += 1
        bucket.mirrored += int(mirrored)
        bucket.errors += int(error)
        if latency_ms is not None and len(bucket.latencies) < LATENCIES_PER_BUCKET:
            bucket.latencies.append(latency_ms)
        self._drop_old(now)

    def _drop_old(self, now: float) -> None:
        horizon = now - self.bucket_seconds * self.max_buckets
        while self._buckets and self._buckets[0].start < horizon:
            self._buckets.popleft()

    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        """The buckets of the last hour, oldest first: their start, how many seconds they
        cover (less for the current one), counts and latency percentiles."""
        now = time.time() if now is None else now
        self._drop_old(now)
        return [
            {
                "at": datetime.fromtimestamp(b.start, UTC).isoformat(),
                "seconds": round(min(self.bucket_seconds, max(now - b.start, 1.0)), 3),
                "requests": b.requests,
                "mirrored": b.mirrored,
                "errors": b.errors,
                **percentiles(list(b.latencies)),
            }
            for b in self._buckets
        ]


@dataclass
class DeploymentCounters:
    """What one deployment served: live, direct and mirrored requests."""

    requests: int = 0
    mirrored: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    history: RequestHistory = field(default_factory=RequestHistory)
    last_error: dict[str, Any] | None = None

    def record(
        self,
        status: int,
        latency_ms: float | None,
        *,
        mirrored: bool = False,
        server_failed: bool = False,
        message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Count one request that went to this deployment.

        `status` is the model server's status, or the front's own when the server gave none
        (408 timeout, 424 unreachable, 503 not ready). `server_failed` marks those failures of
        the deployment as 5xx errors although 408 and 424 are 4xx codes.
        `latency_ms` is None when nothing was sent (deployment not ready).
        """
        self.requests += 1
        self.mirrored += int(mirrored)
        self.statuses[status] += 1
        if latency_ms is not None:
            self.latency.add(latency_ms)
        failed = server_failed or status >= 400
        self.history.add(error=failed, mirrored=mirrored, latency_ms=latency_ms)
        if server_failed or status >= 500:
            self.errors_5xx += 1
        elif status >= 400:
            self.errors_4xx += 1
        else:
            return
        self.last_error = {
            "at": datetime.now(UTC).isoformat(),
            "status": status,
            "mirrored": mirrored,
            "message": (message or "")[:MAX_ERROR_MESSAGE],
            "request_id": request_id,
        }

    def snapshot(self) -> dict[str, Any]:
        window = self.latency.values()
        return {
            "requests": self.requests,
            "mirrored": self.mirrored,
            "errors_4xx": self.errors_4xx,
            "errors_5xx": self.errors_5xx,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "latency_ms": {**percentiles(window), "window": len(window)},
            "last_error": self.last_error,
            "history": self.history.snapshot(),
        }


@dataclass
class FrontMetrics:
    """Counters of one front: per deployment, and the answers the front gave itself."""

    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    requests: int = 0
    front_errors: Counter[int] = field(default_factory=Counter)
    mirror_dropped: int = 0
    deployments: dict[str, DeploymentCounters] = field(default_factory=dict)

    def deployment(self, name: str) -> DeploymentCounters:
        # Not setdefault: its default would build a DeploymentCounters (a Counter, a deque)
        # on every request, only to throw it away.
        counters = self.deployments.get(name)
        if counters is None:
            counters = self.deployments[name] = DeploymentCounters()
        return counters

    def front_error(self, status: int) -> None:
        self.front_errors[status] += 1

    def snapshot(self, names: list[str]) -> dict[str, Any]:
        """Counters as JSON-able values, for each of `names` (zeros when never called)."""
        return {
            "started_at": self.started_at.isoformat(),
            "uptime_seconds": round((datetime.now(UTC) - self.started_at).total_seconds(), 1),
            "requests": self.requests,
            "front_errors": {str(s): self.front_errors.get(s, 0) for s in FRONT_STATUSES},
            "mirror_dropped": self.mirror_dropped,
            "history_bucket_seconds": HISTORY_BUCKET_SECONDS,
            "deployments": {
                name: self.deployments.get(name, DeploymentCounters()).snapshot() for name in names
            },
        }
