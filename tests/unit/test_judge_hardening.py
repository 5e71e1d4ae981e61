"""The LLM judge against hostile or odd local servers (127.0.0.1): redirects never carry the key, any JSON
``content``, one deadline per judgement (a dripping server), a reply size cap, a run whose every call failed."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from saliency_r1.errors import SaliencyR1Error
from saliency_r1.rewards import AccuracyReward
from saliency_r1.rewards.judge import JudgeConfig, JudgeFailedError, LLMJudge, check_judges, content_text

KEY = "sk-secret-do-not-leak"


class Server:
    """A local HTTP server whose reply ``respond(handler)`` chooses; it records every request's headers."""

    def __init__(self, respond):
        self.respond, self.seen, self.stop = respond, [], threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                outer.seen.append({"method": self.command, **dict(self.headers)})
                try:
                    outer.respond(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_POST = do_GET = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    made = []

    def make(respond):
        made.append(Server(respond))
        return made[-1]

    yield make
    for s in made:
        s.close()


def reply(content) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


def send(h, payload: bytes, code: int = 200, length: int | None = None) -> None:
    h.send_response(code)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(payload) if length is None else length))
    h.end_headers()
    h.wfile.write(payload)


def judge(url: str, **kw) -> LLMJudge:
    cfg = dict(url=url, model="m", timeout_s=2.0, max_retries=1, backoff_s=0.01, max_workers=2)
    cfg.update(kw)
    return LLMJudge(JudgeConfig(**cfg))


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_and_the_key_never_reaches_the_other_origin(serve, monkeypatch, code):
    monkeypatch.setenv("SALIENCY_R1_JUDGE_API_KEY", KEY)
    thief = serve(lambda h: send(h, reply("1")))  # another port: another origin

    def redirect(h):
        h.send_response(code)
        h.send_header("Location", f"{thief.base}/steal")
        h.send_header("Content-Length", "0")
        h.end_headers()

    origin = serve(redirect)
    j = judge(origin.base + "/v1")
    assert j.score_many([("q", "red", "blue")]) == [None]
    assert origin.seen and origin.seen[0]["Authorization"] == f"Bearer {KEY}"
    assert thief.seen == []  # never contacted, so it never saw the key
    assert j.stats["redirect"] == 1 and j.stats["requests"] == 1  # refused, not retried


@pytest.mark.parametrize("content,score", [
    ([{"type": "text", "text": "1"}], 1.0), ([{"type": "text", "text": "Verdict: "}, {"type": "text", "text": "0"}], 0.0),
    (["1"], 1.0), (1, 1.0), (0, 0.0), (1.0, 1.0), (None, None), ({"text": "1"}, None), (True, None), ([], None),
    ([{"type": "image_url"}], None)])
def test_any_json_content_gives_a_score_or_none_never_an_exception(serve, content, score):
    s = serve(lambda h: send(h, reply(content)))
    j = judge(s.base + "/v1")
    assert j.score_many([("q", "red", "blue")]) == [score]
    if score is None:
        assert j.stats["unparsable"] == 1 and j.stats["failures"] == 1
    assert content_text(content) is None or isinstance(content_text(content), str)


def test_a_dripping_server_cannot_hold_a_call_past_the_deadline(serve):
    def drip(h):  # headers promise a body, then one byte every 0.5 s (for up to 20 s)
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        for _ in range(40):
            if s.stop.is_set():
                return
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.5)

    s = serve(drip)
    j = judge(s.base + "/v1", timeout_s=1.5, max_retries=3)
    t0 = time.monotonic()
    assert j.score_many([("q", "red", "blue")]) == [None]
    took = time.monotonic() - t0
    # one deadline for every attempt: per-attempt timeouts would take 4 x 1.5 = 6 s, the drip 20 s; 2 s of slack
    # for the watchdog on a loaded machine
    assert took < 1.5 + 2.0, took
    assert j.stats["timeout"] == 1


def test_a_server_dripping_its_headers_is_cut_at_the_deadline_too(serve):
    def drip_headers(h):
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(40):
            if s.stop.is_set():
                return
            h.wfile.write(b"X")
            h.wfile.flush()
            time.sleep(0.3)

    s = serve(drip_headers)
    j = judge(s.base + "/v1", timeout_s=1.0, max_retries=2)
    t0 = time.monotonic()
    assert j.score_many([("q", "red", "blue")]) == [None]
    took = time.monotonic() - t0  # per-attempt timeouts: 3 x 1.0 s at least; the drip: 12 s
    assert took < 1.0 + 1.5 and j.stats["timeout"] == 1, took


@pytest.mark.parametrize("declared", [True, False])
def test_a_huge_reply_is_refused_without_reading_it(serve, declared):
    big = b"x" * 3_000_000  # 3 MB against a 1 MB cap
    s = serve(lambda h: send(h, big) if declared else _chunkless(h, big))
    j = judge(s.base + "/v1")
    assert j.score_many([("q", "red", "blue")]) == [None]
    assert j.stats["too_large"] == 1 and j.stats["requests"] == 1  # not retried


def _chunkless(h, body: bytes) -> None:
    """A reply with no Content-Length: the body ends when the connection closes."""
    h.close_connection = True
    h.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n")
    for k in range(0, len(body), 65536):
        h.wfile.write(body[k:k + 65536])


def test_a_run_whose_every_judge_call_failed_says_so(serve, caplog):
    s = serve(lambda h: send(h, b"", code=500))
    reward = AccuracyReward(judge(s.base + "/v1", max_retries=0))
    for _ in range(3):  # three "steps"
        reward(prompts=[[{"role": "user", "content": "Q?"}]], completions=["<think>x</think>crimson"],
               answer=["red"])
    assert reward.judge.summary()["failures"] == 3 and reward.judge.summary()["judgements"] == 3
    with pytest.raises(JudgeFailedError, match="every one of the 3 LLM judge call") as e:
        check_judges([reward])
    assert isinstance(e.value, SaliencyR1Error) and "http_error 3" in str(e.value)  # the CLI: one line, exit 2


def test_a_run_with_some_judge_failures_warns_and_passes(serve, caplog):
    state = {"n": 0}

    def flaky(h):
        state["n"] += 1
        send(h, reply("1")) if state["n"] % 2 else send(h, b"", code=500)

    s = serve(flaky)
    j = judge(s.base + "/v1", max_retries=0, max_workers=1)
    assert j.score_many([("q", "red", f"p{i}") for i in range(4)]).count(None) == 2
    summary = check_judges([AccuracyReward(j)])
    assert summary["ok"] == 2 and summary["failures"] == 2
    assert any("2 of 4 judgement(s) failed" in r.getMessage() for r in caplog.records)
