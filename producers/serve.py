"""``stream-cd serve``: an HTTP endpoint for applications, in front of the workers on Kafka.

``POST /predict`` with an event (or a list of them) produces each to
``<prefix>.events`` as a request keyed by its model key (with an ``id``
assigned when it has none) and answers with the prediction a worker served
for it, as it appears on ``<prefix>.predictions`` (``id``, ``model_key``,
``arm``, ``version``, ``experiment``, ``prediction``, ``ts``); a list is
answered with a list, in order. ``POST /feedback`` produces feedback
(``{"key", "id", "y"}``, or a list) and answers once the broker has it.
``GET /healthz`` says whether the server can answer.

A ranking request (``items``) goes to ``/predict`` and is answered with the
item ids served; its clicks (``clicked``) go to ``/feedback``.

Errors are JSON objects with an ``error``: 400 for malformed JSON or an
invalid event (the reason; nothing of the body is produced), 401 without the
bearer token when one is configured (every path but ``/healthz``), 409 for a
request id this server is already waiting for, 422 when the worker refused a
request (the reason it gave in the dead-letter topic, such as a feature that
changed its kind), 503 when the broker did not take a request or the server
cannot read predictions, and 504 naming the request id when no worker answered
in time (no worker holds that model key, or none publishes predictions). When
some requests of a list were answered and others not, the error's ``served``
holds the answers that came, so none is lost; a failed feedback list says which
ids were ``produced``, which ``failed`` and which are ``unconfirmed`` (they may
still land: retry only the failed ones).

Every request goes through Kafka, so every request and every served prediction
is a message in a replayable log: the exposures a worker keeps for delayed
feedback, the experiments that judge arms and the audit trail all read those
topics, and a request answered over HTTP is no different from one produced
by any other application.

One consumer of the predictions and dead-letter topics serves the whole server
(:class:`consumers.predictions.PredictionFeed`); answers and refusals are
matched to the waiting requests by id (:class:`Waiting`). The app takes its Kafka side as two
seams (a ``send`` coroutine function and the :class:`Waiting` the feed fills),
so it runs on an in-memory stand-in in tests.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import signal
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from stream_cd.errors import InvalidEvent, StreamCDError
from stream_cd.events import DEFAULT_MAX_EVENT_BYTES, Clicks, Control, Event, RankingRequest, decode_event
from stream_cd.transport import Topics

__all__ = ["ServeSettings", "Waiting", "Refused", "make_app", "serve", "DEFAULT_TIMEOUT_S"]

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
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"timeout {self.timeout_s} must be positive and finite")
        if self.token is not None and not self.token:
            raise ValueError("an empty token would let every request in")


class Refused(Exception):
    """A worker refused the request (it is in the dead-letter topic with this reason)."""


class Waiting:
    """Requests waiting for their prediction, by id. Everything runs on the event loop;
    a feed in another thread hands records over with ``loop.call_soon_threadsafe(deliver, ...)``.

    >>> async def demo():
    ...     waiting = Waiting()
    ...     answer, refused = waiting.expect("r1"), waiting.expect("r2")
    ...     waiting.deliver([{"id": "r9"}, {"id": ["not", "an", "id"]}, {"id": "r1", "prediction": True},
    ...                      {"id": "r1", "prediction": True}])
    ...     waiting.refuse([("r2", "feature a changed its kind")])
    ...     return await answer, repr(refused.exception()), len(waiting)
    >>> asyncio.run(demo())
    ({'id': 'r1', 'prediction': True}, "Refused('feature a changed its kind')", 0)
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
            ident = record.get("id")
            future = futures.pop(ident, None) if type(ident) is str else None  # another client's record may hold anything
            if future is not None and not future.done():
                future.set_result(record)

    def refuse(self, refusals: list[tuple[str, str]]) -> None:
        """Fail the waiting requests among ``refusals`` (id, the worker's reason) with :class:`Refused`."""
        for ident, reason in refusals:
            self.fail(ident, Refused(reason))

    def fail(self, ident: str, err: BaseException, future: asyncio.Future | None = None) -> None:
        """Fail request ``ident`` (only if ``future`` is still the one it waits on, when given:
        a late failure of an earlier request must not fail a newer one with the same id)."""
        waiting = self._futures.get(ident)
        if waiting is None or (future is not None and waiting is not future):
            return
        del self._futures[ident]
        if not waiting.done():
            waiting.set_exception(err)

    def forget(self, ident: str) -> None:
        future = self._futures.pop(ident, None)
        if future is not None and not future.done():
            future.cancel()


class _Answer(Exception):
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
        raise _Answer(400, f"malformed JSON: {err}") from None
    if type(parsed) is list:
        if not parsed:
            raise _Answer(400, "an empty list holds no event")
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
            raise _Answer(400, where + err.reason) from None
        _check_kind(event, where, feedback)
        ident = event.id  # a request has one now; decode_event makes feedback (and clicks) carry one
        assert ident is not None
        if ident in seen:
            raise _Answer(400, f"{where}request id {ident!r} comes twice in one body")
        seen.add(ident)
        out.append((ident, event.key, raw))
    return out


def _check_kind(event: Any, where: str, feedback: bool) -> None:
    """Refuse an event that does not belong on this path, saying where it goes."""
    kind = type(event)
    if kind is Control:
        raise _Answer(400, f"{where}a control message steers an experiment; start and stop experiments with "
                           "`stream-cd experiment`")
    if feedback:
        if kind is RankingRequest:
            raise _Answer(400, f"{where}a ranking request (items) goes to /predict; its clicks come here")
        if kind is Event and event.x is not None:
            raise _Answer(400, f"{where}feedback carries no features (x); send requests to /predict")
        if kind is Event and event.y is None:
            raise _Answer(400, f"{where}feedback needs a label y (and the id of its request)")
        return
    if kind is Clicks:
        raise _Answer(400, f"{where}clicks (an id and clicked items) are feedback; send them to /feedback")
    if kind is Event and event.x is None:
        raise _Answer(400, f"{where}a prediction request needs features in x; feedback (an id and y) goes to /feedback")
    if kind is Event and event.y is not None:
        raise _Answer(400, f"{where}a prediction request has no label y; send labels to /feedback")


def _failed(waiting: Waiting, ident: str, answer: asyncio.Future, sent: asyncio.Future) -> None:
    """A request the broker did not take fails at once instead of timing out."""
    if not sent.cancelled() and sent.exception() is not None:
        waiting.fail(ident, sent.exception(), answer)  # type: ignore[arg-type]


def make_app(settings: ServeSettings, send: Send, waiting: Waiting, healthy: Callable[[], bool] = lambda: True) -> web.Application:
    """The HTTP app on its Kafka seams: ``send(topic, key, value)`` resolves once the broker
    has the message; ``waiting`` is filled with the predictions as they appear."""
    topics, timeout = settings.topics, settings.timeout_s

    @web.middleware
    async def authorised(request: web.Request, handler):
        if settings.token is not None and request.path != "/healthz":
            given = request.headers.get("Authorization", "")  # bytes that are not UTF-8 come surrogate-escaped
            if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), f"Bearer {settings.token}".encode()):
                return _error(401, "this server needs 'Authorization: Bearer <token>'" if not given
                              else "the bearer token is wrong")
        try:
            return await handler(request)
        except _Answer as answer:
            return _error(answer.status, answer.message, **answer.extra)

    async def predict(request: web.Request) -> web.Response:
        items, single = await _parse(request)
        requests = _validated(items, single, settings.max_event_bytes, feedback=False)
        if not healthy():
            raise _Answer(503, "this server cannot read predictions now (see /healthz); nothing was produced")
        for ident, _, _ in requests:
            if ident in waiting:
                raise _Answer(409, f"request id {ident!r} is already waiting for its prediction here", id=ident)
        answers = [waiting.expect(ident) for ident, _, _ in requests]
        sends = []  # held while they fly: the loop keeps only weak references to tasks
        try:
            for (ident, key, raw), answer in zip(requests, answers):
                sends.append(sent := asyncio.ensure_future(send(topics.events, key.encode(), raw)))
                sent.add_done_callback(lambda f, ident=ident, answer=answer: _failed(waiting, ident, answer, f))
            await asyncio.wait(answers, timeout=timeout)
        finally:  # a client that went away, or the requests that had no answer in time
            for ident, _, _ in requests:
                waiting.forget(ident)
        return _answered(requests, answers, single)

    def _answered(requests: list[tuple[str, str, bytes]], answers: list[asyncio.Future], single: bool) -> web.Response:
        """The predictions, or the first kind of error among the answers: a request the broker
        did not take (503), one a worker refused (422), one not answered in time (504)."""
        outcome: dict[str, list] = {"failed": [], "refused": [], "late": [], "served": []}
        for (ident, key, _), answer in zip(requests, answers):
            if not answer.done() or answer.cancelled():
                outcome["late"].append((ident, key))
            elif isinstance(answer.exception(), Refused):
                outcome["refused"].append((ident, str(answer.exception())))
            elif answer.exception() is not None:
                outcome["failed"].append((ident, answer.exception()))
            else:
                outcome["served"].append(answer.result())
        served = {} if single else {"served": outcome["served"]}  # the answers that came are not lost
        if outcome["failed"]:
            ident, err = outcome["failed"][0]
            raise _Answer(503, f"request {ident!r} could not be produced to {topics.events!r}: {err}",
                          ids=[i for i, _ in outcome["failed"]], **served)
        if outcome["refused"]:
            ident, reason = outcome["refused"][0]
            raise _Answer(422, f"the worker refused request {ident!r}: {reason}", id=ident,
                          refused=[{"id": i, "reason": r} for i, r in outcome["refused"]], **served)
        if outcome["late"]:
            ident, key = outcome["late"][0]
            raise _Answer(504, f"no prediction for request {ident!r} within {timeout:g} s: no worker answered for "
                               f"model key {key!r} (is one running on {topics.events!r} with --publish-predictions?)",
                          id=ident, ids=[i for i, _ in outcome["late"]], **served)
        results = outcome["served"]
        return web.json_response(results[0] if single else results, dumps=_dumps)

    async def feedback(request: web.Request) -> web.Response:
        items, single = await _parse(request)
        labels = _validated(items, single, settings.max_event_bytes, feedback=True)
        sends = [asyncio.ensure_future(send(topics.events, key.encode(), raw)) for _, key, raw in labels]
        await asyncio.wait(sends, timeout=timeout)
        ids = [ident for ident, _, _ in labels]
        produced = [i for i, sent in zip(ids, sends) if sent.done() and sent.exception() is None]
        if len(produced) < len(ids):  # say which landed, which failed and which may yet land
            failed = [(i, sent.exception()) for i, sent in zip(ids, sends) if sent.done() and sent.exception() is not None]
            unconfirmed = [i for i, sent in zip(ids, sends) if not sent.done()]
            for sent in sends:
                sent.cancel()  # the wait only: the producer may still deliver what is unconfirmed
            first, reason = failed[0] if failed else (unconfirmed[0], f"the broker did not take it within {timeout:g} s")
            raise _Answer(503 if failed else 504, f"feedback {first!r} could not be produced to {topics.events!r}: "
                          f"{reason}", produced=produced, failed=[i for i, _ in failed], unconfirmed=unconfirmed)
        return web.json_response({"produced": len(labels), "ids": ids}, status=202, dumps=_dumps)

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
    from consumers.kafka_worker import dead_letter_topic_spec
    from consumers.predictions import PredictionFeed
    from stream_cd.errors import TransportError

    loop = asyncio.get_running_loop()
    specs = [TopicSpec(topics.events), TopicSpec(topics.predictions), dead_letter_topic_spec(topics.dead_letter)]
    await loop.run_in_executor(None, ensure_topics, bootstrap, specs, 30.0, client_options)
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="stream-cd-serve", acks="all",
                                 enable_idempotence=True, linger_ms=1, **client_options)
        producer.partitions_for(topics.events)  # its metadata now, not at the first request
    except KafkaError as err:
        raise TransportError(f"cannot connect to Kafka at {bootstrap}: {err}") from err
    waiting = Waiting()
    feed = PredictionFeed(bootstrap, topics.predictions, lambda records: loop.call_soon_threadsafe(waiting.deliver, records),
                          dead_letter_topic=topics.dead_letter,
                          refuse=lambda refusals: loop.call_soon_threadsafe(waiting.refuse, refusals),
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
