"""The HTTP app of ``stream-cd serve`` on an in-memory Kafka side: what it produces, how it
answers, and every error it gives (the real broker's turn is in tests/kafka/test_serve.py)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from producers.serve import ServeSettings, Waiting, make_app
from stream_cd.transport import Topics

TOPICS = Topics("t")


class Kafka:
    """Records what is produced; ``worker`` answers each request as a worker would (or not)."""

    def __init__(self, waiting: Waiting, answer: bool = True, fail: bool | str = False) -> None:
        self.waiting, self.answer, self.fail = waiting, answer, fail
        self.produced: list[tuple[str, bytes, dict]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        event = orjson.loads(value)
        if self.fail is True or (self.fail and event["id"] == self.fail):
            raise RuntimeError("broker says no")
        self.produced.append((topic, key, event))
        later = asyncio.get_running_loop().call_later
        if self.answer and "items" in event:  # a ranking request: served its item ids
            record = {"id": event["id"], "prediction": [item["id"] for item in event["items"]]}
            later(0.01, self.waiting.deliver, [record])
        elif self.answer and "x" in event:
            if type(event["x"].get("a")) is str:  # as a worker refuses a feature that changed its kind
                later(0.01, self.waiting.refuse, [(event["id"], "feature 'a' is 'red', a string, but earlier ...")])
                return
            if event["x"].get("a") == 404:  # a request the worker never answers
                return
            record = {"id": event["id"], "model_key": event.get("key", "default"), "arm": "champion",
                      "version": "v1.0", "experiment": None, "prediction": event["x"].get("a", 0) > 1, "ts": 7}
            later(0.01, self.waiting.deliver, [record, record])  # a repeat is dropped


def run(check, *, token: str | None = None, timeout_s: float = 1.0, healthy=lambda: True, **kafka_options) -> None:
    async def main() -> None:
        waiting = Waiting()
        kafka = Kafka(waiting, **kafka_options)
        app = make_app(ServeSettings(TOPICS, timeout_s=timeout_s, token=token), kafka.send, waiting, healthy)
        async with TestClient(TestServer(app)) as client:
            await check(client, kafka, waiting)

    asyncio.run(main())


def test_a_request_is_produced_keyed_by_model_key_with_an_id_and_answered_with_its_prediction() -> None:
    async def check(client, kafka, waiting):
        response = await client.post("/predict", data=b'{"key": "shop", "x": {"a": 2}}')
        assert response.status == 200
        answer = await response.json()
        [(topic, key, event)] = kafka.produced
        assert (topic, key, event["key"], event["x"]) == ("t.events", b"shop", "shop", {"a": 2})
        assert len(event["id"]) == 32 and answer["id"] == event["id"]
        assert answer == {"id": event["id"], "model_key": "shop", "arm": "champion", "version": "v1.0",
                          "experiment": None, "prediction": True, "ts": 7}
        assert len(waiting) == 0

    run(check)


def test_a_list_is_answered_in_order_and_given_ids_are_kept() -> None:
    async def check(client, kafka, waiting):
        body = orjson.dumps([{"id": "r1", "x": {"a": 0}}, {"id": "r2", "x": {"a": 5}}, {"x": {"a": 3}}])
        answers = await (await client.post("/predict", data=body)).json()
        assert [a["id"] for a in answers[:2]] == ["r1", "r2"] and [a["prediction"] for a in answers] == [False, True, True]
        assert [e["id"] for _, _, e in kafka.produced] == [a["id"] for a in answers]

    run(check)


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"x": {"a": 1', "malformed JSON: unexpected end of data"),
    (b"", "malformed JSON"),
    (b"[]", "an empty list holds no event"),
    (b'"text"', "event is a string; it must be a JSON object"),
    (b'{"x": {"a": [1]}}', "feature 'a' is a list"),
    (b'{"key": 7, "x": {"a": 1}}', "key is 7"),
    (b'[{"x": {"a": 1}}, {"x": {"a": null}}]', "event 1: feature 'a' is null"),
    (b'{"x": {"a": 1}, "y": true}', "a prediction request has no label y; send labels to /feedback"),
    (b'{"id": "r1", "y": true}', "a prediction request needs features in x; feedback (an id and y) goes to /feedback"),
    (b'{"id": "q1", "clicked": ["a"]}', "clicks (an id and clicked items) are feedback; send them to /feedback"),
    (b'{"control": "stop", "experiment": {"name": "e1"}}', "a control message steers an experiment"),
    (b'[{"id": "r1", "x": {"a": 1}}, {"id": "r1", "x": {"a": 2}}]', "event 1: request id 'r1' comes twice"),
])
def test_bad_input_gets_a_400_with_the_reason_and_nothing_is_produced(body: bytes, reason: str) -> None:
    async def check(client, kafka, waiting):
        response = await client.post("/predict", data=body)
        assert response.status == 400
        assert reason in (await response.json())["error"]
        assert kafka.produced == [] and len(waiting) == 0

    run(check)


def test_no_answer_in_time_is_a_504_naming_the_request_id() -> None:
    async def check(client, kafka, waiting):
        response = await client.post("/predict", data=b'{"id": "lonely", "key": "k9", "x": {"a": 1}}')
        assert response.status == 504
        body = await response.json()
        assert body["id"] == "lonely" and "'lonely'" in body["error"] and "'k9'" in body["error"]
        assert len(kafka.produced) == 1 and len(waiting) == 0

    run(check, answer=False, timeout_s=0.2)


def test_a_request_the_broker_does_not_take_is_a_503_at_once() -> None:
    async def check(client, kafka, waiting):
        response = await client.post("/predict", data=b'{"id": "r1", "x": {"a": 1}}')
        assert response.status == 503 and "broker says no" in (await response.json())["error"]

    run(check, fail=True, timeout_s=30)


def test_an_id_already_waiting_is_a_409() -> None:
    async def check(client, kafka, waiting):
        first = asyncio.ensure_future(client.post("/predict", data=b'{"id": "r1", "x": {"a": 1}}'))
        while "r1" not in waiting:
            await asyncio.sleep(0)
        second = await client.post("/predict", data=b'{"id": "r1", "x": {"a": 1}}')
        assert second.status == 409 and "'r1'" in (await second.json())["error"]
        assert (await first).status == 504

    run(check, answer=False, timeout_s=0.3)


def test_feedback_is_produced_and_acknowledged_and_bad_feedback_is_refused() -> None:
    async def check(client, kafka, waiting):
        response = await client.post("/feedback", data=b'{"key": "shop", "id": "r1", "y": true}')
        assert response.status == 202 and await response.json() == {"produced": 1, "ids": ["r1"]}
        assert kafka.produced == [("t.events", b"shop", {"key": "shop", "id": "r1", "y": True})]
        for body, reason in [(b'{"key": "shop", "y": true}', "needs the id of its request"),
                             (b'{"id": "r1", "x": {"a": 1}, "y": true}', "feedback carries no features"),
                             (b'{"id": "r1"}', "x is missing"),
                             (b'{"id": "q1", "items": [{"id": "a", "x": {"f": 1}}]}', "a ranking request (items) goes to /predict"),
                             (b'{"control": "stop", "experiment": {"name": "e1"}}', "a control message steers")]:
            refused = await client.post("/feedback", data=body)
            assert refused.status == 400 and reason in (await refused.json())["error"]
        assert len(kafka.produced) == 1

    run(check)


def test_with_a_token_every_path_but_the_health_check_needs_it() -> None:
    async def check(client, kafka, waiting):
        assert (await client.get("/healthz")).status == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            for path in ("/predict", "/feedback"):
                response = await client.post(path, data=b'{"x": {"a": 1}}', headers=headers)
                assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
                assert "token" in (await response.json())["error"]
        assert kafka.produced == []
        ok = await client.post("/predict", data=b'{"x": {"a": 1}}', headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200 and len(kafka.produced) == 1

    run(check, token="s3cret")


def test_settings_refuse_an_empty_token_and_a_timeout_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="empty token"):
        ServeSettings(TOPICS, token="")
    for timeout in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="must be positive and finite"):
            ServeSettings(TOPICS, timeout_s=timeout)


def test_a_ranking_request_is_answered_with_its_items_and_its_clicks_are_feedback() -> None:
    async def check(client, kafka, waiting):
        body = b'{"key": "shop", "items": [{"id": "b", "x": {"f": 1}}, {"id": "a", "x": {"f": 2}}]}'
        answer = await (await client.post("/predict", data=body)).json()
        assert answer["prediction"] == ["b", "a"] and answer["id"] == kafka.produced[0][2]["id"]
        clicks = orjson.dumps({"key": "shop", "id": answer["id"], "clicked": ["a"]})
        response = await client.post("/feedback", data=clicks)
        assert response.status == 202 and await response.json() == {"produced": 1, "ids": [answer["id"]]}

    run(check)


def test_a_request_the_worker_refuses_is_a_422_with_its_reason_and_the_answers_that_came_are_kept() -> None:
    async def check(client, kafka, waiting):
        response = await client.post("/predict", data=b'{"id": "r1", "x": {"a": "red"}}')
        body = await response.json()
        assert response.status == 422 and body["id"] == "r1" and "served" not in body
        assert body["error"] == "the worker refused request 'r1': feature 'a' is 'red', a string, but earlier ..."
        listed = orjson.dumps([{"id": "r2", "x": {"a": 5}}, {"id": "r3", "x": {"a": "red"}}, {"id": "r4", "x": {"a": 0}}])
        response = await client.post("/predict", data=listed)
        body = await response.json()
        assert response.status == 422 and [r["id"] for r in body["refused"]] == ["r3"]
        assert [(a["id"], a["prediction"]) for a in body["served"]] == [("r2", True), ("r4", False)]
        assert len(waiting) == 0

    run(check, timeout_s=5)


def test_a_list_with_a_late_request_is_a_504_that_keeps_the_answers_that_came() -> None:
    async def check(client, kafka, waiting):
        listed = orjson.dumps([{"id": "r1", "x": {"a": 5}}, {"id": "r2", "x": {"a": 404}}])
        response = await client.post("/predict", data=listed)
        body = await response.json()
        assert response.status == 504 and body["ids"] == ["r2"] and [a["id"] for a in body["served"]] == ["r1"]

    run(check, timeout_s=0.3)


def test_a_server_that_cannot_read_predictions_answers_503_at_once_and_produces_nothing() -> None:
    async def check(client, kafka, waiting):
        response = await client.post("/predict", data=b'{"id": "r1", "x": {"a": 1}}')
        assert response.status == 503 and "cannot read predictions" in (await response.json())["error"]
        assert kafka.produced == []

    run(check, healthy=lambda: False, timeout_s=30)


def test_a_feedback_list_that_fails_in_part_says_which_labels_were_produced() -> None:
    async def check(client, kafka, waiting):
        labels = orjson.dumps([{"id": "r1", "y": True}, {"id": "r2", "y": False}, {"id": "r3", "y": True}])
        response = await client.post("/feedback", data=labels)
        body = await response.json()
        assert response.status == 503 and "broker says no" in body["error"]
        assert (body["produced"], body["failed"], body["unconfirmed"]) == (["r1", "r3"], ["r2"], [])

    run(check, fail="r2")


def test_an_authorization_header_that_is_not_utf8_is_a_401() -> None:
    async def check(client, kafka, waiting):
        reader, writer = await asyncio.open_connection(client.host, client.port)  # raw bytes: a client would encode
        body = b'{"x": {"a": 1}}'
        writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(body), body))
        status_line = await reader.readline()
        writer.close()
        assert status_line.split()[1] == b"401" and kafka.produced == []

    run(check, token="s3cret")


def test_a_late_failure_of_an_earlier_request_does_not_fail_a_newer_one_with_the_same_id() -> None:
    async def main():
        waiting = Waiting()
        old = waiting.expect("r1")
        waiting.forget("r1")  # the first request timed out; its client asks again
        new = waiting.expect("r1")
        waiting.fail("r1", RuntimeError("the first send expired"), old)
        assert not new.done() and "r1" in waiting
        waiting.deliver([{"id": "r1", "prediction": True}])
        return new.result()

    assert asyncio.run(main()) == {"id": "r1", "prediction": True}
