"""The request history an endpoint's front keeps per deployment, and the Metrics tab's series
drawn from it (so requests made before the tab was opened show)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from components.endpoint_metrics import history_frame
from deploystudio.deployment.local.metrics import (
    HISTORY_BUCKET_SECONDS,
    HISTORY_BUCKETS,
    LATENCIES_PER_BUCKET,
    DeploymentCounters,
    FrontMetrics,
    RequestHistory,
)

T0 = 1_800_000_000.0  # a bucket boundary (divisible by 10)


def test_requests_fall_in_ten_second_buckets_with_their_errors_and_latency():
    history = RequestHistory()
    history.add(error=False, mirrored=False, latency_ms=2.0, now=T0 + 1)
    history.add(error=True, mirrored=False, latency_ms=4.0, now=T0 + 9)
    history.add(error=False, mirrored=True, latency_ms=None, now=T0 + 25)
    first, second = history.snapshot(now=T0 + 27)
    assert first["at"] == datetime.fromtimestamp(T0, UTC).isoformat()
    assert (first["requests"], first["errors"], first["mirrored"]) == (2, 1, 0)
    assert first["seconds"] == HISTORY_BUCKET_SECONDS
    assert first["p50"] == pytest.approx(3.0)
    assert second["at"] == datetime.fromtimestamp(T0 + 20, UTC).isoformat()
    assert (second["requests"], second["mirrored"], second["p50"]) == (1, 1, None)
    # The bucket still filling covers only the seconds gone by.
    assert second["seconds"] == pytest.approx(7.0)


def test_the_history_keeps_one_hour_and_bounds_each_bucket():
    history = RequestHistory()
    for i in range(LATENCIES_PER_BUCKET + 50):
        history.add(error=False, mirrored=False, latency_ms=float(i), now=T0)
    hour = HISTORY_BUCKET_SECONDS * HISTORY_BUCKETS
    history.add(error=False, mirrored=False, latency_ms=1.0, now=T0 + hour - 5)
    (old, new) = history.snapshot(now=T0 + hour - 1)
    assert old["requests"] == LATENCIES_PER_BUCKET + 50  # counted, if not all timed
    assert old["p99"] <= LATENCIES_PER_BUCKET
    history.add(error=False, mirrored=False, latency_ms=1.0, now=T0 + hour + 20)
    assert history.snapshot(now=T0 + hour + 21)[0]["at"] == new["at"]  # the old one dropped


def test_counters_record_into_the_history_and_the_front_reports_it():
    metrics = FrontMetrics()
    metrics.deployment("blue").record(200, 3.0)
    metrics.deployment("blue").record(503, None, server_failed=True)
    snap = metrics.snapshot(["blue", "green"])
    assert snap["history_bucket_seconds"] == HISTORY_BUCKET_SECONDS
    (bucket,) = snap["deployments"]["blue"]["history"]
    assert (bucket["requests"], bucket["errors"]) == (2, 1)
    assert snap["deployments"]["green"]["history"] == []
    assert DeploymentCounters().snapshot()["history"] == []


def test_the_series_fill_quiet_buckets_with_zero_from_the_oldest_request_to_now():
    start = datetime.fromtimestamp(T0, UTC)
    bucket = {"at": start.isoformat(), "seconds": 10, "requests": 20, "errors": 5}
    bucket |= {"mirrored": 0, "p50": 2.0, "p90": 3.0, "p99": 4.0}
    deployments = {"blue": {"history": [bucket]}, "green": {"history": []}}
    now = pd.Timestamp(T0 + 31, unit="s", tz="UTC")
    frame = history_frame(deployments, 10, now)
    blue = frame[frame["deployment"] == "blue"]
    assert list(blue["requests/s"]) == [2.0, 0.0, 0.0, 0.0]
    assert list(blue["errors/s"]) == [0.5, 0.0, 0.0, 0.0]
    assert blue["p50"].iloc[0] == 2.0 and blue["p50"].iloc[1:].isna().all()
    green = frame[frame["deployment"] == "green"]
    assert len(green) == 4 and (green["requests/s"] == 0).all()
    assert history_frame({"blue": {"history": []}}, 10, now).empty
