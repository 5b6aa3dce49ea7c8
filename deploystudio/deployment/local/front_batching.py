"""Adaptive batching in an endpoint's front: concurrent requests become one model call.

For a deployment with `max_batch_size` > 1 (deployment/adaptive_batching.py), a JSON request
whose rows the front can read (Azure's `input_data` and MLflow's `dataframe_split` as
{columns, data}; `dataframe_records`, `instances` and `inputs` as lists of rows) waits in a
queue keyed by its format, columns, params and content type. The front keeps at most one
request in flight per server worker; while they are busy, requests gather, and when a worker
is free the oldest queue goes as one request of up to `max_batch_size` requests' rows. With
`max_wait_ms` > 0 a batch short of that size waits as long for companions even when a worker
is free. A lone request goes with its own bytes, so it is answered exactly as without batching.

The answer is split back by rows: MLflow's `{"predictions": [...]}` or a bare list (the Azure
ML inference server with our no-code script), one item per row. Anything else - an error
status, no answer, an answer that is not one item per row - and each request of the batch is
sent again alone, so that one bad request never fails its neighbours and every caller gets the
answer the server gives its own request. Requests whose params differ are never batched together.
Labels and integers come out identical; a float computed over a matrix of several rows may
differ from the lone row's in its last digit (BLAS sums in another order), as with any server
that batches.

Why not the model server's own batching: neither MLflow's scoring server nor the Azure ML
inference server has any; both call `predict` once per request, and most of a small model's
`predict` time is per call, not per row.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from deploystudio.deployment.local import upstream
from deploystudio.deployment.local.routing import DeploymentView

_SPLIT_FORMATS = ("input_data", "dataframe_split")
_ROW_FORMATS = ("dataframe_records", "instances", "inputs")
_CONTENT_TYPE = b"content-type"
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Rows:
    """A request read for batching: its rows, and what requests batched with it must share."""

    key: tuple[Any, ...]
    form: str
    columns: list[Any] | None
    rows: list[Any]
    params: Any


def content_type(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name.lower() == _CONTENT_TYPE:
            return value.strip().lower()
    return b""


def read_rows(body: bytes | bytearray, kind: bytes) -> Rows | None:
    """The rows of a JSON request body in a batchable form, or None (sent as it is)."""
    if not kind.startswith(b"application/json"):
        return None
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict) or not 1 <= len(decoded) <= 2:
        return None
    forms = [name for name in decoded if name != "params"]
    if len(forms) != 1:
        return None
    form, value = forms[0], decoded[forms[0]]
    params = decoded.get("params")
    if params is not None and not isinstance(params, dict):
        return None
    params_key = orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
    if form in _SPLIT_FORMATS:
        # An index is the caller's: it would not survive the merge, so such requests go alone.
        if not isinstance(value, dict) or set(value) != {"columns", "data"}:
            return None
        columns, rows = value["columns"], value["data"]
        if not isinstance(columns, list) or not _rows_of(rows, list, len(columns)):
            return None
        shape: Any = tuple(map(_hashable, columns))
    elif form in _ROW_FORMATS:
        if not isinstance(value, list) or not value:
            return None
        columns = None
        first = value[0]
        if isinstance(first, dict):
            shape = tuple(first)
            if not all(isinstance(row, dict) and tuple(row) == shape for row in value):
                return None
        elif isinstance(first, list):
            shape = len(first)
            if not _rows_of(value, list, shape):
                return None
        else:
            return None
        rows = value
    else:
        return None
    return Rows((form, shape, params_key, kind), form, columns, rows, params)


def _rows_of(rows: Any, kind: type, width: int) -> bool:
    return (
        isinstance(rows, list)
        and bool(rows)
        and all(isinstance(row, kind) and len(row) == width for row in rows)
    )


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | None) else repr(value)


def merged_body(parts: list[Rows]) -> bytes:
    """One request holding the rows of `parts` (which share their key), in order."""
    first = parts[0]
    rows = [row for part in parts for row in part.rows]
    value: Any = {"columns": first.columns, "data": rows} if first.form in _SPLIT_FORMATS else rows
    body: dict[str, Any] = {first.form: value}
    if first.params is not None:
        body["params"] = first.params
    return orjson.dumps(body)


def split_answer(payload: bytes, counts: list[int]) -> list[bytes] | None:
    """The answer of a merged request cut into one answer per part (`counts` rows each), in
    the server's shape; None when it is not one prediction per row."""
    try:
        decoded = json.loads(payload)
    except ValueError:
        return None
    wrapped = isinstance(decoded, dict)
    if wrapped and set(decoded) == {"predictions"}:
        predictions = decoded["predictions"]
    elif isinstance(decoded, list):
        predictions = decoded
    else:
        return None
    if not isinstance(predictions, list) or len(predictions) != sum(counts):
        return None
    answers, start = [], 0
    for count in counts:
        part = predictions[start : start + count]
        start += count
        # json.dumps with its default separators writes what both servers write (MLflow's
        # json.dump, Flask's JSON of the inference server), so a part reads as a lone answer.
        answers.append(json.dumps({"predictions": part} if wrapped else part).encode())
    return answers


@dataclass
class _Waiting:
    rows: Rows
    body: bytes | bytearray
    headers: Headers
    future: asyncio.Future[upstream.UpstreamResponse]
    since: float


class _Server:
    """One deployment server's queues (by batch key, oldest first) and requests in flight."""

    def __init__(self) -> None:
        self.queues: dict[tuple[Any, ...], list[_Waiting]] = {}
        self.in_flight = 0
        self.timer: asyncio.TimerHandle | None = None


class Batcher:
    """Gathers the batchable requests of batching deployments; one per front, one event loop."""

    def __init__(self, client: upstream.Upstream) -> None:
        self._client = client
        self._servers: dict[tuple[str, int], _Server] = {}
        self._tasks: set[asyncio.Task] = set()
        self.batches = 0
        self.batched_requests = 0
        self.retried_alone = 0

    async def post(
        self, view: DeploymentView, body: bytes | bytearray, headers: Headers
    ) -> upstream.UpstreamResponse:
        """As `Upstream.post` to `view`'s server, batched with others when it can be."""
        assert view.port is not None
        rows = None
        if view.batching.enabled:
            rows = read_rows(body, content_type(headers))
        if rows is None:
            return await self._client.post(
                view.port, view.score_path, body, headers, view.timeout_seconds
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[upstream.UpstreamResponse] = loop.create_future()
        server = self._servers.setdefault((view.name, view.port), _Server())
        waiting = _Waiting(rows, body, headers, future, time.monotonic())
        server.queues.setdefault(rows.key, []).append(waiting)
        self._pump(view, server)
        # The request's own timeout covers its wait in the queue too; when it expires the
        # future is cancelled, and a batch that takes it later leaves it out.
        async with asyncio.timeout(view.timeout_seconds):
            return await future

    def counts(self) -> dict[str, int]:
        """Batches sent, the requests they held, and those sent again alone after a batch failed."""
        return {
            "batches": self.batches,
            "batched_requests": self.batched_requests,
            "retried_alone": self.retried_alone,
        }

    async def close(self) -> None:
        for server in self._servers.values():
            if server.timer is not None:
                server.timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    def _pump(self, view: DeploymentView, server: _Server) -> None:
        """Send batches while the server has a free worker."""
        if server.timer is not None:
            server.timer.cancel()
            server.timer = None
        settings = view.batching
        while server.in_flight < max(1, view.workers) and server.queues:
            key = min(server.queues, key=lambda k: server.queues[k][0].since)
            queue = server.queues[key]
            live = [w for w in queue if not w.future.done()]
            if not live:
                del server.queues[key]
                continue
            wait = live[0].since + settings.max_wait_ms / 1000 - time.monotonic()
            if len(live) < settings.max_batch_size and wait > 0:
                server.queues[key] = live
                server.timer = asyncio.get_running_loop().call_later(wait, self._pump, view, server)
                return
            batch, rest = live[: settings.max_batch_size], live[settings.max_batch_size :]
            if rest:
                server.queues[key] = rest
            else:
                del server.queues[key]
            server.in_flight += 1
            task = asyncio.create_task(self._send(view, server, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, view: DeploymentView, server: _Server, batch: list[_Waiting]) -> None:
        try:
            batch = [w for w in batch if not w.future.done()]
            if len(batch) == 1:
                await self._alone(view, batch[0])
            elif batch:
                await self._together(view, batch)
        finally:
            server.in_flight -= 1
            self._pump(view, server)

    async def _together(self, view: DeploymentView, batch: list[_Waiting]) -> None:
        assert view.port is not None
        self.batches += 1
        self.batched_requests += len(batch)
        parts = None
        try:
            answer = await self._client.post(
                view.port,
                view.score_path,
                merged_body([w.rows for w in batch]),
                batch[0].headers,
                view.timeout_seconds,
            )
        except (TimeoutError, upstream.UpstreamError):
            answer = None
        if answer is not None and answer.status == 200:
            parts = split_answer(answer.body, [len(w.rows.rows) for w in batch])
        if answer is None or parts is None:
            # One bad request must not fail the others: each goes again on its own.
            self.retried_alone += len(batch)
            await asyncio.gather(*(self._alone(view, w) for w in batch))
            return
        for waiting, part in zip(batch, parts, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(upstream.UpstreamResponse(200, answer.headers, part))

    async def _alone(self, view: DeploymentView, waiting: _Waiting) -> None:
        assert view.port is not None
        if waiting.future.done():
            return
        try:
            answer = await self._client.post(
                view.port, view.score_path, waiting.body, waiting.headers, view.timeout_seconds
            )
        except (TimeoutError, upstream.UpstreamError) as exc:
            if not waiting.future.done():
                waiting.future.set_exception(exc)
            return
        if not waiting.future.done():
            waiting.future.set_result(answer)
