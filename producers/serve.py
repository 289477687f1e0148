"""``stream-cd serve``: an HTTP endpoint for applications, in front of the workers on Kafka.

``POST /predict`` with an event (or a list of them) produces each to
``<prefix>.events`` as a request keyed by its model key (with an ``id``
assigned when it has none) and answers with the prediction a worker served
for it, as it appears on ``<prefix>.predictions`` (``id``, ``model_key``,
``arm``, ``version``, ``experiment``, ``prediction``, ``ts``); a list is
answered with a list, in order. ``POST /feedback`` produces feedback
(``{"key", "id", "y"}``, or a list) and answers once the broker has it.
``GET /healthz`` says whether the server can answer.

Errors are JSON objects with an ``error``: 400 for malformed JSON or an
invalid event (the reason; nothing of the body is produced), 401 without the
bearer token when one is configured (every path but ``/healthz``), 409 for a
request id this server is already waiting for, 503 when the broker did not
take a request, and 504 naming the request id when no worker answered in
time (no worker holds that model key, or none publishes predictions).

Every request goes through Kafka, so every request and every served prediction
is a message in a replayable log: the exposures a worker keeps for delayed
feedback, the experiments that judge arms and the audit trail all read those
topics, and a request answered over HTTP is no different from one produced
by any other application.

One consumer of the predictions topic serves the whole server
(:class:`consumers.predictions.PredictionFeed`); answers are matched to the
waiting requests by id (:class:`Waiting`). The app takes its Kafka side as two
seams (a ``send`` coroutine function and the :class:`Waiting` the feed fills),
so it runs on an in-memory stand-in in tests.
"""

from __future__ import annotations

import asyncio
import hmac
import signal
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from stream_cd.errors import InvalidEvent, StreamCDError
from stream_cd.events import DEFAULT_MAX_EVENT_BYTES, decode_event
from stream_cd.transport import Topics

__all__ = ["ServeSettings", "Waiting", "make_app", "serve", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 5.0
Send = Callable[[str, bytes, bytes], Awaitable[None]]


@dataclass(frozen=True)
class ServeSettings:
    """What the HTTP app needs to know: topic names, how long to wait, the token (if any)."""

    topics: Topics
    timeout_s: float = DEFAULT_TIMEOUT_S
    token: str | None = None
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout {self.timeout_s} must be positive")
        if self.token is not None and not self.token:
            raise ValueError("an empty token would let every request in")


class Waiting:
    """Requests waiting for their prediction, by id. Everything runs on the event loop;
    a feed in another thread hands records over with ``loop.call_soon_threadsafe(deliver, ...)``.

    >>> async def demo():
    ...     waiting = Waiting()
    ...     answer = waiting.expect("r1")
    ...     waiting.deliver([{"id": "r9"}, {"id": "r1", "prediction": True}, {"id": "r1", "prediction": True}])
    ...     return await answer, len(waiting)
    >>> asyncio.run(demo())
    ({'id': 'r1', 'prediction': True}, 0)
    """

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future] = {}

    def __len__(self) -> int:
        return len(self._futures)

    def __contains__(self, ident: object) -> bool:
        return ident in self._futures

    def expect(self, ident: str) -> asyncio.Future:
        """The future of request ``ident``'s prediction; ``ident`` must not be waiting already."""
        if ident in self._futures:
            raise KeyError(ident)
        future = self._futures[ident] = asyncio.get_running_loop().create_future()
        return future

    def deliver(self, records: list[dict]) -> None:
        """Answer the waiting requests among ``records``; the first record of an id wins (a
        prediction repeated after a worker's crash is the same record)."""
        futures = self._futures
        for record in records:
            future = futures.pop(record.get("id"), None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(record)

    def fail(self, ident: str, err: BaseException) -> None:
        future = self._futures.pop(ident, None)
        if future is not None and not future.done():
            future.set_exception(err)

    def forget(self, ident: str) -> None:
        future = self._futures.pop(ident, None)
        if future is not None and not future.done():
            future.cancel()


class _Refused(Exception):
    """A request answered with an error status and message."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _error(status: int, message: str, **extra: Any) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response({"error": message, **extra}, status=status, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _parse(request: web.Request) -> tuple[list[Any], bool]:
    """The body's events and whether it held one (not a list)."""
    body = await request.read()
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise _Refused(400, f"malformed JSON: {err}") from None
    if type(parsed) is list:
        if not parsed:
            raise _Refused(400, "an empty list holds no event")
        return parsed, False
    return [parsed], True


def _validated(items: list[Any], single: bool, max_bytes: int, feedback: bool) -> list[tuple[str, str, bytes]]:
    """``(id, model key, bytes to produce)`` of each event, every one checked before any is produced."""
    out: list[tuple[str, str, bytes]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = "" if single else f"event {i}: "
        if type(item) is dict and not feedback and item.get("id") is None:
            item = {**item, "id": uuid.uuid4().hex}
        raw = orjson.dumps(item)
        try:
            event = decode_event(raw, max_bytes)
        except InvalidEvent as err:
            raise _Refused(400, where + err.reason) from None
        if feedback and event.x is not None:
            raise _Refused(400, f"{where}feedback carries no features (x); send requests to /predict")
        if feedback and event.y is None:
            raise _Refused(400, f"{where}feedback needs a label y (and the id of its request)")
        if not feedback and event.x is None:
            raise _Refused(400, f"{where}a prediction request needs features in x; feedback (an id and y) goes to /feedback")
        if not feedback and event.y is not None:
            raise _Refused(400, f"{where}a prediction request has no label y; send labels to /feedback")
        ident = event.id  # a request has one now; decode_event makes feedback carry one
        assert ident is not None
        if ident in seen:
            raise _Refused(400, f"{where}request id {ident!r} comes twice in one body")
        seen.add(ident)
        out.append((ident, event.key, raw))
    return out


def _failed(waiting: Waiting, ident: str, sent: asyncio.Future) -> None:
    """A request the broker did not take fails at once instead of timing out."""
    if not sent.cancelled() and sent.exception() is not None:
        waiting.fail(ident, sent.exception())  # type: ignore[arg-type]


def make_app(settings: ServeSettings, send: Send, waiting: Waiting, healthy: Callable[[], bool] = lambda: True) -> web.Application:
    """The HTTP app on its Kafka seams: ``send(topic, key, value)`` resolves once the broker
    has the message; ``waiting`` is filled with the predictions as they appear."""
    topics, timeout = settings.topics, settings.timeout_s

    @web.middleware
    async def authorised(request: web.Request, handler):
        if settings.token is not None and request.path != "/healthz":
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {settings.token}".encode()):
                return _error(401, "this server needs 'Authorization: Bearer <token>'" if not given
                              else "the bearer token is wrong")
        try:
            return await handler(request)
        except _Refused as refused:
            return _error(refused.status, refused.message, **refused.extra)

    async def predict(request: web.Request) -> web.Response:
        items, single = await _parse(request)
        requests = _validated(items, single, settings.max_event_bytes, feedback=False)
        for ident, _, _ in requests:
            if ident in waiting:
                raise _Refused(409, f"request id {ident!r} is already waiting for its prediction here", id=ident)
        answers = [waiting.expect(ident) for ident, _, _ in requests]
        sends = []  # held while they fly: the loop keeps only weak references to tasks
        try:
            for ident, key, raw in requests:
                sends.append(sent := asyncio.ensure_future(send(topics.events, key.encode(), raw)))
                sent.add_done_callback(lambda f, ident=ident: _failed(waiting, ident, f))
            await asyncio.wait(answers, timeout=timeout)
        finally:  # a client that went away, or the requests that had no answer in time
            for ident, _, _ in requests:
                waiting.forget(ident)
        late = [(ident, key) for (ident, key, _), answer in zip(requests, answers) if not answer.done() or answer.cancelled()]
        failed = [(ident, answer.exception()) for (ident, _, _), answer in zip(requests, answers)
                  if answer.done() and not answer.cancelled() and answer.exception() is not None]
        if failed:
            ident, err = failed[0]
            raise _Refused(503, f"request {ident!r} could not be produced to {topics.events!r}: {err}",
                           ids=[i for i, _ in failed])
        if late:
            ident, key = late[0]
            raise _Refused(504, f"no prediction for request {ident!r} within {timeout:g} s: no worker answered for "
                           f"model key {key!r} (is one running on {topics.events!r} with --publish-predictions?)",
                           id=ident, ids=[i for i, _ in late])
        results = [answer.result() for answer in answers]
        return web.json_response(results[0] if single else results, dumps=_dumps)

    async def feedback(request: web.Request) -> web.Response:
        items, single = await _parse(request)
        labels = _validated(items, single, settings.max_event_bytes, feedback=True)
        try:
            await asyncio.wait_for(asyncio.gather(*(send(topics.events, key.encode(), raw) for _, key, raw in labels)),
                                   timeout)
        except asyncio.TimeoutError:
            raise _Refused(504, f"the broker did not take the feedback within {timeout:g} s") from None
        except Exception as err:  # noqa: BLE001 - what the producer reports
            raise _Refused(503, f"feedback could not be produced to {topics.events!r}: {err}") from None
        return web.json_response({"produced": len(labels), "ids": [ident for ident, _, _ in labels]}, status=202,
                                 dumps=_dumps)

    async def healthz(request: web.Request) -> web.Response:
        ok = healthy()
        return web.json_response({"status": "ok" if ok else "unavailable", "waiting": len(waiting)},
                                 status=200 if ok else 503, dumps=_dumps)

    app = web.Application(middlewares=[authorised])
    app.add_routes([web.post("/predict", predict), web.post("/feedback", feedback), web.get("/healthz", healthz)])
    return app


# -- on Kafka -----------------------------------------------------------------------------------


def serve(bootstrap: str, topics: Topics, *, host: str = "127.0.0.1", port: int = 8080,
          timeout_s: float = DEFAULT_TIMEOUT_S, token: str | None = None,
          on_ready: Callable[[str], None] | None = None, client_options: dict | None = None) -> None:
    """Run the HTTP server on Kafka until SIGTERM or SIGINT; ``on_ready(url)`` once it listens.
    ``client_options`` (kafka-python settings: security, SASL, TLS) go to its every client."""
    asyncio.run(_serve(bootstrap, topics, host, port, ServeSettings(topics, timeout_s, token), on_ready,
                       dict(client_options or {})))


async def _serve(bootstrap: str, topics: Topics, host: str, port: int, settings: ServeSettings,
                 on_ready: Callable[[str], None] | None, client_options: dict) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from consumers.admin import TopicSpec, ensure_topics
    from consumers.predictions import PredictionFeed
    from stream_cd.errors import TransportError

    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ensure_topics, bootstrap, [TopicSpec(topics.events), TopicSpec(topics.predictions)],
                               30.0, client_options)
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="stream-cd-serve", acks="all",
                                 enable_idempotence=True, linger_ms=1, **client_options)
        producer.partitions_for(topics.events)  # its metadata now, not at the first request
    except KafkaError as err:
        raise TransportError(f"cannot connect to Kafka at {bootstrap}: {err}") from err
    waiting = Waiting()
    feed = PredictionFeed(bootstrap, topics.predictions, lambda records: loop.call_soon_threadsafe(waiting.deliver, records),
                          client_options=client_options)

    async def send(topic: str, key: bytes, value: bytes) -> None:
        done = loop.create_future()

        def settle(err: BaseException | None) -> None:
            if done.done():
                return
            if err is None:
                done.set_result(None)
            else:
                done.set_exception(err)

        sent = producer.send(topic, key=key, value=value)
        sent.add_callback(lambda _: loop.call_soon_threadsafe(settle, None))
        sent.add_errback(lambda err: loop.call_soon_threadsafe(settle, err))
        await done

    runner = web.AppRunner(make_app(settings, send, waiting, lambda: feed.alive), access_log=None)
    stop = asyncio.Event()
    try:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        address = runner.addresses[0]
        if on_ready is not None:
            on_ready(f"http://{address[0]}:{address[1]}")
        await stop.wait()
    except OSError as err:
        raise StreamCDError(f"cannot listen on {host}:{port}: {err}") from err
    finally:
        await runner.cleanup()
        feed.close()
        await loop.run_in_executor(None, lambda: producer.close(timeout=5))
