"""Judges: exact normalisation; the openai judge against a local fake OpenAI-compatible server (real HTTP on
127.0.0.1) that rate-limits, fails and answers malformed replies: retries, Retry-After, cache, concurrency."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evaluation.judges import ExactJudge, JudgeFatal, exact_match, normalize
from evaluation.openai_judge import MalformedReply, OpenAIJudge, Prompts, parse_reply, retry_after_seconds

# ---- exact ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer, pred", [
    ("circle", "Circle"), ("circle", "a circle."), ("circle", "The circle!"), ("circle", "circles"),
    ("circles", "circle"), ("box", "boxes"), ("berry", "berries"), ("man", "men"), ("person", "people"),
    ("2", "two"), ("two", "2"), ("21", "twenty-one"), ("0", "zero"), ("red", " RED "),
    ("t-shirt", "T shirt"), ("yes", "Yes."), ("bus", "buses"), ("dress", "dresses"),
])
def test_exact_matches(answer, pred):
    assert exact_match(answer, pred)
    judgment = ExactJudge().judge("q", answer, pred)
    assert (judgment.pred, judgment.score) == ("yes", None)  # exact match gives no score


@pytest.mark.parametrize("answer, pred", [
    ("circle", "square"), ("2", "3"), ("two", "twenty"), ("yes", "no"), ("circle", "red circle"),
    ("circle", ""), ("", ""), ("left", "it moves left"), ("yes", "ye"),
])
def test_exact_mismatches(answer, pred):
    assert not exact_match(answer, pred)
    judgment = ExactJudge().judge("q", answer, pred)
    assert (judgment.pred, judgment.score) == ("no", None)


def test_normalize():
    assert normalize("The Two  red-circles, an apple!") == ["2", "red", "circles", "apple"]
    assert normalize("man's hat") == ["mans", "hat"]


# ---- reply parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reply, want", [
    ("{'pred': 'yes', 'score': 4}", ("yes", 4)),
    ("{'pred': 'No', 'score': 0}", ("no", 0)),
    ("```python\n{'pred': 'yes', 'score': 5}\n```", ("yes", 5)),
    ("Sure! {'pred': 'yes', 'score': 4.8}", ("yes", 4)),  # a fractional score is truncated, as common scorers do
    ('{"pred": "no", "score": "2"}', ("no", 2)),
])
def test_parse_reply(reply, want):
    assert parse_reply(reply) == want


@pytest.mark.parametrize("reply", [
    "yes", "{'pred': 'maybe', 'score': 3}", "{'pred': 'yes', 'score': 7}", "{'pred': 'yes'}",
    "{'pred': 'yes', 'score': True}", "{'pred': __import__('os').getcwd(), 'score': 1}", "{'pred': 'yes',",
])
def test_parse_reply_rejects(reply):
    with pytest.raises(MalformedReply):
        parse_reply(reply)


def test_retry_after_header():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait


def test_prompt_substitution_is_single_pass():
    text = Prompts().user_message("what is {answer}?", "red", "{question}")
    assert "Question: what is {answer}?\nCorrect Answer: red\nPredicted Answer: {question}\n" in text
    assert "{'pred': 'yes', 'score': 4}" in text  # the example dict's braces are left alone


# ---- fake server ------------------------------------------------------------------------------------


class FakeOpenAI:
    """Replies like /v1/chat/completions; behaviour per predicted answer:
    'ratelimited' -> 429 (Retry-After: 7) once; 'flaky' -> 500 twice; 'chatty' -> a malformed reply once;
    'garbage' -> always malformed; anything else -> yes/5 when it equals the correct answer, else no/1."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.requests = 0
        self.by_pred: Counter[str] = Counter()
        self.inflight = 0
        self.max_inflight = 0
        self.auth: set[str | None] = set()
        self.models: set[str] = set()
        self.payloads: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                with fake.lock:
                    fake.requests += 1
                    fake.inflight += 1
                    fake.max_inflight = max(fake.max_inflight, fake.inflight)
                try:
                    fake.handle(self)
                finally:
                    with fake.lock:
                        fake.inflight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        if h.path != "/v1/chat/completions":
            return self.send(h, 404, {"error": "not found"})
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        self.auth.add(h.headers.get("Authorization"))
        self.models.add(body["model"])
        with self.lock:
            self.payloads.append(body)
        user = body["messages"][1]["content"]
        assert body["messages"][0]["role"] == "system" and "meaningful" in body["messages"][0]["content"]
        answer = re.search(r"Correct Answer: (.*)\n", user).group(1)
        pred = re.search(r"Predicted Answer: (.*)\n", user).group(1)
        with self.lock:
            self.by_pred[pred] += 1
            seen = self.by_pred[pred]
        time.sleep(self.delay)
        if pred == "ratelimited" and seen == 1:
            return self.send(h, 429, {"error": "slow down"}, {"Retry-After": "7"})
        if pred == "flaky" and seen <= 2:
            return self.send(h, 500 + seen, {"error": "oops"})
        if pred == "garbage" or (pred == "chatty" and seen == 1):
            return self.reply(h, "The prediction looks right to me.")
        verdict = "yes" if pred == answer else "no"
        return self.reply(h, f"{{'pred': '{verdict}', 'score': {5 if verdict == 'yes' else 1}}}")

    def reply(self, h, content: str) -> None:
        self.send(h, 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})

    def send(self, h, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _judge(server, tmp_path, sleeps=None, **kw) -> OpenAIJudge:
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return OpenAIJudge(server.url, "judge-test", api_key="sk-test", cache_path=tmp_path / "cache.jsonl",
                       backoff=0.01, sleep=record, **kw)


def test_openai_judge_retries_obeys_retry_after_and_caches(tmp_path):
    triples = [("what shape?", "circle", "circle"), ("what colour?", "red", "blue"),
               ("how many?", "2", "ratelimited"), ("where?", "left", "flaky"), ("when?", "end", "chatty"),
               ("which?", "square", "garbage")]
    with FakeOpenAI() as server:
        sleeps: list[float] = []
        judge = _judge(server, tmp_path, sleeps, max_retries=3)
        out = judge.judge_many(triples)
        assert [(j.pred, j.score) for j in out[:5]] == [("yes", 5), ("no", 1), ("no", 1), ("no", 1), ("no", 1)]
        assert not out[5].ok and "gave up after 4 attempts: malformed reply" in out[5].error
        assert server.by_pred == Counter({"circle": 1, "blue": 1, "ratelimited": 2, "flaky": 3, "chatty": 2,
                                          "garbage": 4})
        assert judge.requests == server.requests == 13
        assert 7.0 in sleeps  # the 429's Retry-After was obeyed (not the 0.01 s backoff)
        assert all(s < 1 for s in sleeps if s != 7.0)
        assert server.auth == {"Bearer sk-test"} and server.models == {"judge-test"}

        again = _judge(server, tmp_path, max_retries=3)
        out2 = again.judge_many(triples[:5])
        assert again.requests == 0 and server.requests == 13  # a rerun costs nothing
        assert [(j.pred, j.score) for j in out2] == [(j.pred, j.score) for j in out[:5]]
        assert all(j.cached for j in out2)
        again.judge_many(triples)  # only the failed one is asked again
        assert again.requests == 4
        cached = [json.loads(line) for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
        assert len(cached) == 5 and {c["judge_model"] for c in cached} == {"judge-test"}
        # another judge model is another key
        other = OpenAIJudge(server.url, "other-judge", cache_path=tmp_path / "cache.jsonl", sleep=lambda s: None)
        other.judge_many(triples[:1])
        assert other.requests == 1


def test_openai_judge_bounds_concurrency(tmp_path):
    triples = [(f"q{i}", "a", "a" if i % 2 else "b") for i in range(12)]
    with FakeOpenAI(delay=0.15) as server:
        judge = _judge(server, tmp_path, concurrency=3)
        out = judge.judge_many(triples)
    assert [j.pred for j in out] == ["no", "yes"] * 6
    assert server.max_inflight == 3  # in parallel, but never more than asked


def test_openai_judge_fatal_errors_stop_at_once(tmp_path):
    with FakeOpenAI() as server:
        wrong_path = OpenAIJudge(server.url + "/nope", "m", cache_path=tmp_path / "c.jsonl", sleep=lambda s: None)
        with pytest.raises(JudgeFatal, match="HTTP 404"):
            wrong_path.judge_many([("q", "a", "a")] * 3)
    unreachable = OpenAIJudge("http://127.0.0.1:9", "m", max_retries=1, timeout=2, sleep=lambda s: None)
    result = unreachable.judge("q", "a", "a")
    assert not result.ok and "cannot reach" in result.error and unreachable.requests == 2
