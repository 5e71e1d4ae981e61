"""An LLM judge for R_accuracy over any OpenAI-compatible chat endpoint (standard library only).

``POST {url}/chat/completions`` (``url`` may already end in ``/chat/completions``) with
``{"model", "messages", "temperature", "max_tokens"}`` and ``Authorization: Bearer $KEY``; the reply's
``choices[0].message.content`` holds the verdict. URL, model and key come from the config or from
environment variables (the key only ever from the environment; it is not part of the cache key).

Modes: ``binary`` (the paper: GPT-4o-mini says 0 or 1) and ``grade`` (the authors' code: a 1-5
grade, mapped to ``(g - 1) / 4`` in ``[0, 1]``). The prompts are ours: the paper describes them but
does not print them.

Robustness: ``timeout_s`` is ONE deadline for a whole judgement (every attempt, its connection,
headers, body and the backoffs between attempts): a watchdog shuts the socket at the deadline, so a
server dripping a byte at a time cannot hold a call longer. Up to ``max_retries`` retries with
exponential backoff (``backoff_s · 2^k``, capped, with jitter, never past the deadline) on
timeouts, refused/unreachable connections, HTTP 429 and 5xx, and bodies that are not JSON; no
retry on other HTTP 4xx or on a verdict that is not a valid digit. Redirects are refused, never
followed (urllib would resend the ``Authorization`` header to the new host). A reply is read in
chunks up to ``max_reply_bytes``; a longer one is refused. ``content`` may be a string, a list of
parts (``[{"type": "text", "text": ...}]``) or a number; anything else is ``unparsable``. A failed
judgement gives None and increments ``stats[kind]`` (``timeout``, ``unreachable``, ``http_error``,
``redirect``, ``too_large``, ``invalid_json``, ``unparsable``) and ``stats["failures"]``; it never
raises. :func:`check_judges` (called by the GRPO trainer at the end of a run) logs the counts and
raises :class:`JudgeFailedError` when every judgement of the run failed. Successful verdicts are
cached on disk (one JSON file per request, keyed by the SHA-256 of the URL and body, written
atomically). Requests run in a thread pool of ``max_workers``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_io import meta as _h
from ..errors import InputError, SaliencyR1Error

logger = logging.getLogger(__name__)

JUDGE_MODES = ("binary", "grade")

BINARY_PROMPT = (
    "You are grading answers to visual questions. Decide whether the model's answer is correct: it must "
    "mean the same as the ground-truth answer (ignore case, punctuation, articles and wording).\n"
    "Question: {question}\nGround-truth answer: {truth}\nModel answer: {prediction}\n"
    "Reply with one digit only: 1 if the model answer is correct, 0 if it is not."
)
"""The paper's judge (§3.3): 0 for an incorrect answer, 1 for a correct one."""

GRADE_PROMPT = (
    "You are grading answers to visual questions. Compare the model's answer with the ground-truth answer "
    "and grade its correctness from 1 to 5: 1 = wrong, 2 = mostly wrong, 3 = partly correct, "
    "4 = mostly correct, 5 = fully correct.\n"
    "Question: {question}\nGround-truth answer: {truth}\nModel answer: {prediction}\n"
    "Reply with one digit only (1-5)."
)
"""The authors' code: a 1-5 grade, mapped to [0, 1] by (g - 1) / 4."""


@dataclass
class JudgeConfig:
    """Where and how to ask the judge. Empty ``url``/``model`` are read from ``url_env``/``model_env``."""

    url: str | None = field(default=None, metadata=_h("endpoint base URL, e.g. https://api.openai.com/v1"))
    model: str | None = field(default=None, metadata=_h("model name, e.g. gpt-4o-mini"))
    url_env: str = field(default="SALIENCY_R1_JUDGE_URL", metadata=_h("env var with the URL when url is empty"))
    model_env: str = field(default="SALIENCY_R1_JUDGE_MODEL", metadata=_h("env var with the model name"))
    api_key_env: str = field(default="SALIENCY_R1_JUDGE_API_KEY", metadata=_h("env var with the API key"))
    mode: str = field(default="binary", metadata=_h("binary (paper, 0/1) or grade (authors' code, 1-5)",
                                                      choices=JUDGE_MODES))
    timeout_s: float = field(default=30.0, metadata=_h(
        "deadline of one judgement in seconds: all attempts, reads and backoffs together", gt=0))
    max_retries: int = field(default=3, metadata=_h("retries after the first attempt", min=0))
    backoff_s: float = field(default=1.0, metadata=_h("first backoff; doubles per retry", min=0))
    backoff_max_s: float = field(default=30.0, metadata=_h("backoff cap", min=0))
    max_workers: int = field(default=8, metadata=_h("concurrent requests", min=1))
    cache_dir: str | None = field(default=None, metadata=_h("on-disk verdict cache; None: no cache"))
    temperature: float = field(default=0.0, metadata=_h("sampling temperature of the judge", min=0))
    max_tokens: int = field(default=8, metadata=_h("max tokens of the verdict", min=1))
    max_reply_bytes: int = field(default=1_000_000, metadata=_h(
        "longest reply body read; longer ones fail", min=1))


class JudgeFailedError(SaliencyR1Error):
    """Every judgement of a run failed: the accuracy reward was never computed."""


class _Failure(Exception):
    def __init__(self, kind: str, detail: str, retry: bool):
        super().__init__(detail)
        self.kind, self.retry = kind, retry


def chat_url(url: str) -> str:
    """The chat-completions URL of a base URL.

    >>> chat_url("http://127.0.0.1:8000/v1/")
    'http://127.0.0.1:8000/v1/chat/completions'
    """
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def content_text(content: Any) -> str | None:
    """The text of a reply's ``content``: a string, a list of parts, or a number; None for anything else.

    >>> content_text([{"type": "text", "text": "1"}]), content_text(4), content_text(1.0), content_text({})
    ('1', '4', '1', None)
    """
    if isinstance(content, str):
        return content
    if isinstance(content, bool):
        return None
    if isinstance(content, int):
        return str(content)
    if isinstance(content, float):
        return str(int(content)) if content.is_integer() else str(content)
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None for p in content]
        texts = [t for t in parts if isinstance(t, str)]
        return "".join(texts) if texts else None
    return None


def parse_verdict(content: Any, mode: str) -> float | None:
    """The score in ``[0, 1]`` of a judge reply, or None when it holds no valid digit.

    >>> parse_verdict("1", "binary"), parse_verdict("Grade: 4", "grade"), parse_verdict("maybe", "binary")
    (1.0, 0.75, None)
    """
    text = content_text(content)
    m = re.search(r"(?<!\d)(\d)(?!\d)", text or "")
    if m is None:
        return None
    d = int(m.group(1))
    if mode == "binary":
        return float(d) if d in (0, 1) else None
    return (d - 1) / 4.0 if 1 <= d <= 5 else None


class LLMJudge:
    """Scores (question, truth, prediction) triples with an OpenAI-compatible chat endpoint.

    >>> judge = LLMJudge(JudgeConfig(url="http://127.0.0.1:9", model="m", timeout_s=0.2, max_retries=0))
    >>> judge.score_many([("Q?", "red", "blue")]), judge.stats["unreachable"]
    ([None], 1)
    """

    def __init__(self, config: JudgeConfig | None = None):
        self.config = config or JudgeConfig()
        c = self.config
        if c.mode not in JUDGE_MODES:
            raise InputError(f"judge mode {c.mode!r} is unknown; use one of {', '.join(JUDGE_MODES)}")
        self.url = c.url or os.environ.get(c.url_env)
        self.model = c.model or os.environ.get(c.model_env)
        if not self.url or not self.model:
            raise InputError(f"the LLM judge needs a URL and a model; set judge.url/judge.model or the environment "
                             f"variables {c.url_env} and {c.model_env}")
        self.cache = Path(c.cache_dir) if c.cache_dir else None
        self.stats: Counter = Counter()
        self._lock = threading.Lock()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def body(self, question: str, truth: str, prediction: str) -> dict:
        """The request body of one judgement (no secrets)."""
        template = BINARY_PROMPT if self.config.mode == "binary" else GRADE_PROMPT
        text = template.format(question=question, truth=truth, prediction=prediction)
        return {"model": self.model, "messages": [{"role": "user", "content": text}],
                "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}

    def _key(self, body: dict) -> str:
        blob = json.dumps({"url": chat_url(self.url), "body": body}, sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cached(self, key: str) -> float | None:
        if self.cache is None:
            return None
        p = self.cache / key[:2] / f"{key}.json"
        try:
            return float(json.loads(p.read_text())["score"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, key: str, score: float, content: str) -> None:
        if self.cache is None:
            return
        d = self.cache / key[:2]
        tmp = d / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"score": score, "content": content}))
            os.replace(tmp, d / f"{key}.json")
        except OSError as e:  # a cache problem costs a request later, never a crash
            logger.warning("judge cache write failed (%s); continuing without caching this verdict", e)

    def _post(self, body: dict, deadline: float | None = None) -> str:
        """One HTTP attempt, over by ``deadline`` (``time.monotonic()``; default ``timeout_s`` from now);
        the reply's content as text, or :class:`_Failure`."""
        if deadline is None:
            deadline = time.monotonic() + float(self.config.timeout_s)
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(chat_url(self.url), data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
        raw = _fetch(req, deadline, self.config.max_reply_bytes)
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Failure("invalid_json", f"not a chat-completions reply: {raw[:80]!r}", True) from None
        text = content_text(content)
        if text is None:
            raise _Failure("unparsable", f"content is a JSON {type(content).__name__}, not text", False)
        return text

    def score(self, question: str, truth: str, prediction: str) -> float | None:
        """The verdict of one triple in ``[0, 1]``; None (counted) on any failure."""
        body = self.body(question, truth, prediction)
        key = self._key(body)
        cached = self._cached(key)
        if cached is not None:
            self._count("cache_hits")
            return cached
        c = self.config
        deadline = time.monotonic() + float(c.timeout_s)
        for attempt in range(c.max_retries + 1):
            self._count("requests")
            try:
                content = self._post(body, deadline)
            except _Failure as f:
                pause = min(c.backoff_max_s, c.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
                if f.retry and attempt < c.max_retries and time.monotonic() + pause < deadline:
                    time.sleep(pause)
                    continue
                return self._fail(f.kind, str(f))
            except Exception as e:  # noqa: BLE001 - a judge problem must never stop training
                return self._fail("error", repr(e))
            verdict = parse_verdict(content, c.mode)
            if verdict is None:
                return self._fail("unparsable", f"reply {content[:40]!r} holds no valid verdict")
            self._count("ok")
            self._store(key, verdict, content)
            return verdict
        return self._fail("exhausted", "no attempt left")  # not reached: the loop returns

    def _fail(self, kind: str, detail: str) -> None:
        """Count a failed judgement and log it; the score is None."""
        self._count(kind)
        self._count("failures")
        logger.warning("LLM judge failed (%s: %s); score None; %d failure(s) so far", kind, detail[:120],
                       self.stats["failures"])
        return None

    def summary(self) -> dict[str, int]:
        """The counters: ``judgements`` (asked, cache hits included), ``ok``, ``cache_hits``,
        ``failures`` and one count per failure kind."""
        with self._lock:
            stats = dict(self.stats)
        ok, hits, failures = stats.get("ok", 0), stats.get("cache_hits", 0), stats.get("failures", 0)
        return {"judgements": ok + hits + failures, **stats, "ok": ok, "cache_hits": hits, "failures": failures}

    def score_many(self, triples: list[tuple[str, str, str]]) -> list[float | None]:
        """Verdicts of many triples, at most ``max_workers`` requests at a time, in input order."""
        if not triples:
            return []
        workers = max(1, min(self.config.max_workers, len(triples)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
            return list(pool.map(lambda t: self.score(*t), triples))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: following one would resend the API key to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise _Failure("redirect", f"HTTP {code} redirect to {newurl[:80]!r} refused (the key is never "
                                   "sent on); set judge.url to the final endpoint", False)


class _Watchdog:
    """Shuts the attempt's socket at the deadline, whatever urllib is blocked in (connect, headers, body)."""

    def __init__(self, deadline: float):
        self.deadline, self.fired, self._sock = deadline, False, None
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def attach(self, sock) -> None:
        self._sock = sock
        if time.monotonic() >= self.deadline:
            self._fire()

    def _fire(self) -> None:
        self.fired = True
        if self._sock is not None:
            try:
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


def _watched(base: type, watchdog: _Watchdog) -> type:
    """``base`` (an ``http.client`` connection class) handing its socket to ``watchdog`` once connected."""
    class Watched(base):
        def connect(self):
            super().connect()
            watchdog.attach(self.sock)
    return Watched


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(_watched(http.client.HTTPConnection, watchdog), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(_watched(http.client.HTTPSConnection, watchdog), req, context=self._context)

    return urllib.request.build_opener(_NoRedirect, HTTP, HTTPS)


def _fetch(req: urllib.request.Request, deadline: float, max_bytes: int) -> bytes:
    """The reply body of ``req``, read in chunks, all by ``deadline`` and at most ``max_bytes``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Failure("timeout", "no time left before the deadline", False)
    with _Watchdog(deadline) as dog:
        try:
            with _opener(dog).open(req, timeout=remaining) as resp:
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise _Failure("too_large", f"reply of {int(length):,} bytes > max_reply_bytes {max_bytes:,}", False)
                chunks, size = [], 0
                while True:
                    chunk = resp.read1(65536)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise _Failure("too_large", f"reply longer than max_reply_bytes {max_bytes:,}", False)
                    if time.monotonic() > deadline:
                        raise _Failure("timeout", "reply not complete by the deadline", False)
                    chunks.append(chunk)
        except _Failure:
            raise
        except urllib.error.HTTPError as e:
            raise _Failure("http_error", f"HTTP {e.code}", e.code == 429 or e.code >= 500) from None
        except Exception as e:  # noqa: BLE001 - every transport failure is one counted kind
            if dog.fired or time.monotonic() >= deadline or _is_timeout(e):
                raise _Failure("timeout", f"no complete reply by the deadline ({type(e).__name__})", True) from None
            if isinstance(e, http.client.HTTPException):
                raise _Failure("invalid_json", f"not an HTTP reply ({type(e).__name__})", True) from None
            if isinstance(e, (urllib.error.URLError, OSError)):
                raise _Failure("unreachable", str(getattr(e, "reason", e)), True) from None
            raise
    if dog.fired:
        raise _Failure("timeout", "reply not complete by the deadline", True)
    return b"".join(chunks)


def _is_timeout(e: BaseException) -> bool:
    return isinstance(e, (socket.timeout, TimeoutError)) or isinstance(getattr(e, "reason", None),
                                                                      (socket.timeout, TimeoutError))


def judges_of(reward_funcs: Any) -> list[LLMJudge]:
    """The :class:`LLMJudge` objects among reward functions (their ``judge`` attribute).

    >>> judges_of([len, object()])
    []
    """
    found = []
    for f in reward_funcs or []:
        j = getattr(f, "judge", None)
        if isinstance(j, LLMJudge) and j not in found:
            found.append(j)
    return found


def check_judges(reward_funcs: Any) -> dict[str, int]:
    """Log the judges' counters at the end of a run; raise :class:`JudgeFailedError` (one line, exit 2)
    when every judgement of the run failed. Returns the summed counters (empty without a judge).

    >>> check_judges([])
    {}
    """
    total: Counter = Counter()
    for judge in judges_of(reward_funcs):
        total.update(judge.summary())
    if not total:
        return {}
    summary = dict(total)
    logger.info("LLM judge: %d judgement(s), %d ok, %d cache hit(s), %d failed", summary["judgements"],
                summary["ok"], summary["cache_hits"], summary["failures"])
    if summary["judgements"] and summary["failures"] == summary["judgements"]:
        kinds = ", ".join(f"{k} {summary[k]}" for k in sorted(summary) if k in _FAILURE_KINDS and summary[k])
        raise JudgeFailedError(f"every one of the {summary['judgements']} LLM judge call(s) of this run failed "
                               f"({kinds}): R_accuracy was never computed; check judge.url, the key in "
                               "$SALIENCY_R1_JUDGE_API_KEY and judge.timeout_s, then re-run")
    if summary["failures"]:
        logger.warning("LLM judge: %d of %d judgement(s) failed (their accuracy reward was None)",
                       summary["failures"], summary["judgements"])
    return summary


_FAILURE_KINDS = ("timeout", "unreachable", "http_error", "redirect", "too_large", "invalid_json", "unparsable",
                  "error", "exhausted")

__all__ = ["JudgeConfig", "LLMJudge", "JudgeFailedError", "JUDGE_MODES", "BINARY_PROMPT", "GRADE_PROMPT",
           "chat_url", "content_text", "parse_verdict", "judges_of", "check_judges"]
