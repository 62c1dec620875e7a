"""The `openai` judge: the Video-ChatGPT protocol against any OpenAI-compatible chat-completions endpoint.

This is the protocol behind the MSVD/MSRVTT/ActivityNet-QA numbers of Video-ChatGPT, Video-LLaVA, LLaMA-VID
and VoCo-LLaMA: a system prompt on judging the correctness of generative answers by meaningful match
(synonyms and paraphrases accepted), a user prompt with Question / Correct Answer / Predicted Answer,
and a reply that is a Python dict string `{'pred': 'yes'|'no', 'score': 0..5}`, read with
`ast.literal_eval`. A fractional score is truncated to an integer, as the common scorers do. Requests
run in a bounded thread pool, 429/5xx/network errors and malformed replies are retried with
exponential backoff (a Retry-After header is obeyed), and every judgment is cached on disk, keyed by a
hash of (judge model and decoding settings, prompts, question, answer, prediction): a rerun costs
nothing. `--judge-prompt-from` (evaluation/judge_prompts.py) reads the published prompt from a checkout.
"""

from __future__ import annotations

import ast
import email.utils
import hashlib
import http.client
import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from evaluation.judges import JudgeFatal, Judgment, Triple
from evaluation.predictions import JsonlAppender, read_jsonl

SYSTEM_PROMPT = (
    "You are an intelligent chatbot that evaluates the correctness of generative outputs for question-answer "
    "pairs. Your task is to compare the predicted answer with the correct answer and decide whether they match "
    "meaningfully. How to do it:\n"
    "------\n"
    "##INSTRUCTIONS:\n"
    "- Focus on the meaningful match between the predicted answer and the correct answer.\n"
    "- Accept synonyms or paraphrases as valid matches.\n"
    "- Evaluate how correct the prediction is compared to the correct answer."
)
USER_PROMPT = (
    "Please evaluate the following video-based question-answer pair:\n\n"
    "Question: {question}\n"
    "Correct Answer: {answer}\n"
    "Predicted Answer: {pred}\n\n"
    "Provide your evaluation only as a yes/no and a score, where the score is an integer from 0 to 5, 5 being the "
    "highest meaningful match. Reply with a Python dictionary string with keys 'pred' and 'score': the value of "
    "'pred' is the string 'yes' or 'no', the value of 'score' is an INTEGER, not a STRING. "
    "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
    "For example, your response should look like this: {'pred': 'yes', 'score': 4}."
)


@dataclass(frozen=True)
class Prompts:
    system: str = SYSTEM_PROMPT
    user: str = USER_PROMPT
    """`{question}`, `{answer}`, `{pred}` are replaced (other braces are left alone)."""

    @classmethod
    def load(cls, path: str | os.PathLike) -> Prompts:
        """A JSON file {"system": ..., "user": ...} (to use another wording, e.g. the original verbatim)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"--judge-prompt {path}: cannot read it as JSON ({err})") from err
        if not isinstance(data, dict) or not isinstance(data.get("system"), str) or not isinstance(data.get("user"),
                                                                                                      str):
            raise ValueError(f"--judge-prompt {path}: needs string fields 'system' and 'user'")
        missing = [f for f in ("{question}", "{answer}", "{pred}") if f not in data["user"]]
        if missing:
            raise ValueError(f"--judge-prompt {path}: the user prompt lacks {', '.join(missing)}")
        return cls(data["system"], data["user"])

    @property
    def sha256(self) -> str:
        """Identifies the wording (written into every result, so runs with different prompts are told apart)."""
        return hashlib.sha256((self.system + "\0" + self.user).encode("utf-8")).hexdigest()

    def user_message(self, question: str, answer: str, pred: str) -> str:
        # one pass over the template, so a prediction containing "{answer}" is not substituted again
        fields = {"{question}": question, "{answer}": answer, "{pred}": pred}
        return re.sub(r"\{question\}|\{answer\}|\{pred\}", lambda m: fields[m.group(0)], self.user)


class MalformedReply(ValueError):
    pass


def parse_reply(content: str) -> tuple[str, int]:
    """The judge's reply -> ('yes'|'no', score 0..5); MalformedReply when it is not the dict asked for."""
    text = content.strip()
    fenced = re.search(r"```(?:python|json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1).strip()
    match = re.search(r"\{.*\}", text, re.S)
    if not match:
        raise MalformedReply(f"no dict in the reply {content[:120]!r}")
    try:
        value = ast.literal_eval(match.group(0))  # literal_eval: a reply is data, never code
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        raise MalformedReply(f"not a Python dict literal ({err.__class__.__name__}): {content[:120]!r}") from err
    if not isinstance(value, dict):
        raise MalformedReply(f"not a dict: {content[:120]!r}")
    pred = value.get("pred")
    if not isinstance(pred, str) or pred.strip().lower().rstrip(".") not in ("yes", "no"):
        raise MalformedReply(f"'pred' must be 'yes' or 'no', got {pred!r}")
    score = value.get("score")
    if isinstance(score, str):
        try:
            score = float(score.strip())
        except ValueError:
            score = None
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 5:
        raise MalformedReply(f"'score' must be a number 0..5, got {value.get('score')!r}")
    return pred.strip().lower().rstrip("."), int(score)


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) -> seconds to wait."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class JudgeCache:
    """Judgments on disk (JSONL), keyed by a hash of what determines them; appended as they come."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        for record in read_jsonl(self.path).records:
            if isinstance(record.get("key"), str):
                self.entries[record["key"]] = record
        self._writer: JsonlAppender | None = None
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = JsonlAppender(self.path, lock=False)
            record = {"key": key, **entry}
            self._writer.write(record)
            self.entries[key] = record

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class OpenAIJudge:
    """Video-ChatGPT-protocol judge against an OpenAI-compatible `/chat/completions` endpoint."""

    name = "openai"
    gives_score = True

    def __init__(
        self,
        url: str = "https://api.openai.com/v1",
        model: str = "gpt-3.5-turbo",
        *,
        api_key: str | None = None,
        cache_path: str | os.PathLike | None = None,
        concurrency: int = 4,
        max_retries: int = 6,
        timeout: float = 60.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_retry_after: float = 300.0,
        temperature: float | None = 0.0,
        decoding: dict | None = None,
        prompts: Prompts | None = None,
        prompt_source: str = "built-in",
        sleep: Callable[[float], None] = time.sleep,
    ):
        if concurrency < 1:
            raise ValueError(f"judge concurrency must be >= 1, got {concurrency}")
        url = url.rstrip("/")
        self.endpoint = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.model = model
        self.api_key = api_key
        self.cache = JudgeCache(cache_path) if cache_path is not None else None
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.temperature = temperature
        """None: not sent (the endpoint's default, as the original scripts did)."""
        self.decoding = dict(decoding or {})
        """Other chat-completion settings sent with every request (top_p, max_tokens, seed ...)."""
        if "temperature" in self.decoding:
            raise ValueError("pass the judge temperature as `temperature`, not in `decoding`")
        self.prompts = prompts or Prompts()
        self.prompt_source = prompt_source
        """Where the prompts came from: 'built-in', a --judge-prompt JSON or a --judge-prompt-from script."""
        self.sleep = sleep
        self.requests = 0
        """HTTP requests sent by this judge (cache hits send none)."""
        self._count_lock = threading.Lock()

    def settings(self) -> dict:
        """Everything sent besides the messages: decides the judgment along with the prompts."""
        return {"model": self.model, "temperature": self.temperature, **self.decoding}

    def describe(self) -> dict:
        return {"judge": "openai", "endpoint": self.endpoint, "model": self.model,
                "temperature": self.temperature if self.temperature is not None else "endpoint default (not sent)",
                "decoding": self.decoding or "endpoint defaults (nothing sent)",
                "prompt_sha256": self.prompts.sha256, "prompt_source": self.prompt_source}

    def key(self, question: str, answer: str, pred: str) -> str:
        blob = json.dumps([self.settings(), self.prompts.system, self.prompts.user, question, answer, pred],
                          ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    # -- one request -----------------------------------------------------------------------------------

    def _post(self, payload: dict) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=json.dumps(payload).encode("utf-8"), headers=headers,
                                         method="POST")
        with self._count_lock:
            self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as err:
            body = err.read() if err.fp is not None else b""
            return err.code, dict(err.headers.items()) if err.headers else {}, body

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0)

    def judge(self, question: str, answer: str, pred: str) -> Judgment:
        """One judgment, from the cache or the endpoint (with retries); never raises but `JudgeFatal`."""
        key = self.key(question, answer, pred)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return Judgment(hit["pred"], int(hit["score"]), raw=hit.get("raw"), cached=True)
        messages = [{"role": "system", "content": self.prompts.system},
                    {"role": "user", "content": self.prompts.user_message(question, answer, pred)}]
        payload: dict = {"model": self.model, "messages": messages, **self.decoding}
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        problem = ""
        for attempt in range(self.max_retries + 1):
            delay = self._delay(attempt)
            try:
                status, headers, body = self._post(payload)
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError, OSError) as err:
                reason = getattr(err, "reason", err)
                problem = f"cannot reach {self.endpoint} ({reason})"
            else:
                if status == 200:
                    content = ""
                    try:
                        content = json.loads(body)["choices"][0]["message"]["content"] or ""
                        verdict, score = parse_reply(content)
                    except (MalformedReply, json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
                        problem = f"malformed reply: {err}"
                    else:
                        if self.cache is not None:
                            self.cache.put(key, {"judge_model": self.model, "temperature": self.temperature,
                                                 "decoding": self.decoding, "prompt_sha256": self.prompts.sha256,
                                                 "pred": verdict, "score": score,
                                                 "raw": content, "question": question, "answer": answer,
                                                 "prediction": pred})
                        return Judgment(verdict, score, raw=content)
                elif status == 429 or status >= 500:
                    problem = f"HTTP {status}: {_snippet(body)}"
                    after = retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after"))
                    if after is not None:
                        delay = min(after, self.max_retry_after)
                elif status in (401, 403):
                    raise JudgeFatal(f"{self.endpoint}: HTTP {status} ({_snippet(body)}): is OPENAI_API_KEY right "
                                     "for this endpoint?")
                elif status == 404:
                    raise JudgeFatal(f"{self.endpoint}: HTTP 404 ({_snippet(body)}): wrong --judge-url or "
                                     f"--judge-model {self.model!r}?")
                else:
                    return Judgment(None, None, error=f"HTTP {status}: {_snippet(body)}")
            if attempt < self.max_retries:
                self.sleep(delay)
        return Judgment(None, None, error=f"gave up after {self.max_retries + 1} attempts: {problem}")

    # -- many ------------------------------------------------------------------------------------------

    def judge_many(self, triples: Sequence[Triple], progress: bool = False) -> list[Judgment]:
        """Judge all, at most `concurrency` requests in flight; cached ones send nothing."""
        results: list[Judgment | None] = [None] * len(triples)
        todo = []
        for i, (q, a, p) in enumerate(triples):
            hit = self.cache.get(self.key(q, a, p)) if self.cache is not None else None
            if hit is not None:
                results[i] = Judgment(hit["pred"], int(hit["score"]), raw=hit.get("raw"), cached=True)
            else:
                todo.append(i)
        bar = _progress(len(triples), progress, initial=len(triples) - len(todo))
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge") as pool:
                pending: dict[Future, int] = {}
                queue = iter(todo)
                fatal: BaseException | None = None

                def submit_next() -> bool:
                    index = next(queue, None)
                    if index is None:
                        return False
                    pending[pool.submit(self.judge, *triples[index])] = index
                    return True

                for _ in range(self.concurrency):
                    if not submit_next():
                        break
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        index = pending.pop(future)
                        try:
                            results[index] = future.result()
                        except JudgeFatal as err:
                            fatal = fatal or err
                        if bar is not None:
                            bar.update(1)
                        if fatal is None:
                            submit_next()
                if fatal is not None:
                    raise fatal
        finally:
            if bar is not None:
                bar.close()
            if self.cache is not None:
                self.cache.close()
        return [r if r is not None else Judgment(None, None, error="not judged") for r in results]


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "")


def _progress(total: int, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="judging", unit="q", dynamic_ncols=True)
