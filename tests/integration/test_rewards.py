"""Rewards: format and accuracy tables, the LLM judge against local HTTP servers, the saliency reward."""

from __future__ import annotations

import doctest
import http.server
import json
import socket
import threading
import time

import pytest
import torch

from conftest import make_image
from saliency_r1.rewards import (AccuracyReward, JudgeConfig, LLMJudge, SaliencyReward, accuracy_reward,
                                 format_reward)
from saliency_r1.scoring import score_grid

# ---------------------------------------------------------------------------------------------- format

FORMAT_TABLE = [
    ("<think>The circle is red.</think>red", 1.0),
    ("  <think>\nreasoning\n</think>\n answer \n", 1.0),            # whitespace around is fine
    ("<think>r</think><answer>B</answer>", 1.0),                       # <answer> wrapper allowed
    ("<think>r</think>yes<|im_end|>", 1.0),                            # a trailing end-of-turn marker
    ("red", 0.0),                                                      # no tags
    ("", 0.0),
    ("<think>r</think>", 0.0),                                         # no answer
    ("<think>r</think>   ", 0.0),
    ("<think>r</think><answer> </answer>", 0.0),                       # blank answer inside the wrapper
    ("<think>   </think>red", 0.0),                                    # blank reasoning
    ("<think>r red", 0.0),                                             # unclosed
    ("r</think>red", 0.0),                                             # no opening tag
    ("text <think>r</think>red", 0.0),                                 # text before <think>
    ("<think>a</think><think>b</think>red", 0.0),                      # doubled block
    ("<think>a<think>b</think></think>red", 0.0),                      # nested
    ("<think>a</think>red</think>", 0.0),                              # stray closing tag
    ("</think><think>a</think>red", 0.0),
]


@pytest.mark.parametrize("text,expected", FORMAT_TABLE)
def test_format_table(text, expected):
    assert format_reward(completions=[text]) == [expected]
    chat = [[{"role": "assistant", "content": text}]]
    assert format_reward(prompts=[None], completions=chat) == [expected]


def test_format_chat_blocks_and_name():
    blocks = [[{"role": "assistant", "content": [{"type": "text", "text": "<think>r"},
                                                   {"type": "text", "text": "</think>ok"}]}]]
    assert format_reward(completions=blocks) == [1.0]
    assert format_reward.__name__ == "format" and accuracy_reward.__name__ == "accuracy"


# -------------------------------------------------------------------------------------------- accuracy

ACCURACY_TABLE = [
    ("red", "red", 1.0), ("Red.", "red", 1.0), ("The red one", "red one", 1.0), ("blue", "red", 0.0),
    ("Two", "2", 1.0), ("2", "two", 1.0), ("2.0", "2", 1.0), ("twelve", "12", 1.0), ("1,000", "1000", 1.0),
    ("three circles", "3 circles", 1.0), ("3", "4", 0.0),
    ("B", "B", 1.0), ("(B)", "B", 1.0), ("B.", "(B)", 1.0), ("B. blue", "B", 1.0), ("(C) red", "B", 0.0),
    ("blue", "B. blue", 1.0), ("red", "B. blue", 0.0), ("a", "A", 0.0), ("A red circle", "A", 0.0), ("k", "K", 1.0),
    ("Yes", "yes", 1.0), ("yes, there is a red circle.", "yes", 1.0), ("No.", "no", 1.0), ("no", "yes", 0.0),
    ("The answer is: circle", "circle", 1.0), ("Answer: 5", "five", 1.0),
]


@pytest.mark.parametrize("pred,truth,expected", ACCURACY_TABLE)
def test_accuracy_table(pred, truth, expected):
    assert accuracy_reward(completions=[f"<think>x</think>{pred}"], answer=[truth]) == [expected]


def test_accuracy_reads_after_think_and_none_rows():
    comps = ["<think>it is red</think>blue", "red", "<think>a</think><think>b</think>red", "<think>red",
             "<think>x</think>red"]
    out = accuracy_reward(completions=comps, answer=["red", "red", "red", "red", None])
    assert out == [0.0, 1.0, 1.0, 1.0, None]  # no </think>: the whole text, tags removed (format judges tags)


def test_accuracy_needs_answer_column():
    from saliency_r1.errors import InputError

    with pytest.raises(InputError, match="answer"):
        accuracy_reward(completions=["x"])


# ------------------------------------------------------------------------------------------ judge server

class _Server:
    """A local OpenAI-compatible endpoint whose behaviour a test chooses; counts requests."""

    def __init__(self, behaviour: str, verdict: str = "1"):
        self.behaviour, self.verdict = behaviour, verdict
        self.requests = 0
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests += 1
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                server.respond(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def respond(self, h):
        if self.behaviour == "hang":
            self.release.wait(5.0)  # bounded: the test releases it at teardown
            return
        if self.behaviour == "slow_ok":
            time.sleep(0.05)
        if self.behaviour == "500":
            h.send_response(500), h.end_headers()
            return
        if self.behaviour == "garbage":
            payload = b"<html>not json</html>"
        else:
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": self.verdict}}]}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(request):
    servers = []

    def make(behaviour, verdict="1"):
        s = _Server(behaviour, verdict)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def _judge(url, **kw):
    cfg = dict(url=url, model="judge-model", timeout_s=0.3, max_retries=1, backoff_s=0.01, max_workers=4)
    cfg.update(kw)
    return LLMJudge(JudgeConfig(**cfg))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_judge_binary_grade_cache_and_key(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_R1_JUDGE_API_KEY", "sk-test")
    s = server("ok", "1")
    judge = _judge(s.url, cache_dir=str(tmp_path / "cache"))
    assert judge.score_many([("What colour?", "red", "crimson")]) == [1.0]
    assert s.headers[0]["Authorization"] == "Bearer sk-test"
    assert s.bodies[0]["model"] == "judge-model" and "crimson" in s.bodies[0]["messages"][0]["content"]
    assert judge.score_many([("What colour?", "red", "crimson")]) == [1.0]  # from the disk cache
    assert s.requests == 1 and judge.stats["cache_hits"] == 1
    assert "sk-test" not in "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    g = server("ok", "Grade: 4")
    assert _judge(g.url, mode="grade").score_many([("q", "a", "b")]) == [0.75]


def test_judge_bounded_concurrency(server):
    s = server("slow_ok", "0")
    judge = _judge(s.url, max_workers=3)
    real, lock, state = judge._post, threading.Lock(), {"now": 0, "max": 0}

    def post(body, *deadline):  # counts requests in flight on the client side
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        try:
            return real(body, *deadline)
        finally:
            with lock:
                state["now"] -= 1

    judge._post = post
    assert judge.score_many([("q", "t", f"p{i}") for i in range(9)]) == [0.0] * 9
    assert s.requests == 9 and 2 <= state["max"] <= 3


@pytest.mark.parametrize("behaviour,kind", [("hang", "timeout"), ("500", "http_error"), ("garbage", "invalid_json"),
                                            ("unreachable", "unreachable"), ("nonsense", "unparsable")])
def test_judge_failures_give_none_and_count(server, behaviour, kind):
    if behaviour == "unreachable":
        url, s = f"http://127.0.0.1:{_free_port()}/v1", None
    else:
        s = server("ok" if behaviour == "nonsense" else behaviour, "I cannot tell")
        url = s.url
    judge = _judge(url)
    t0 = time.perf_counter()
    assert judge.score_many([("q", "red", "blue"), ("q", "red", "green")]) == [None, None]
    assert time.perf_counter() - t0 < 4.0
    assert judge.stats[kind] == 2 and judge.stats["failures"] == 2
    retried = kind not in ("unparsable", "timeout")  # a hang uses up the one deadline of all attempts
    if s is not None:
        assert s.requests == (4 if retried else 2)  # 1 + max_retries attempts per triple when transient


def test_accuracy_reward_with_failing_judge(server):
    s = server("500")
    reward = AccuracyReward(_judge(s.url, max_retries=0))
    logged = {}
    out = reward(prompts=[[{"role": "user", "content": "Q?"}]] * 3,
                 completions=["<think>x</think>red", "<think>x</think>crimson", "<think>x</think>"],
                 answer=["red", "red", "red"], log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == [1.0, None, 0.0]  # exact match without a call, judge failure, blank answer
    assert logged == {"judge/failures": 1.0, "judge/calls": 1.0} and s.requests == 1


def test_judge_needs_url_and_model(monkeypatch):
    from saliency_r1.errors import InputError

    monkeypatch.delenv("SALIENCY_R1_JUDGE_URL", raising=False)
    with pytest.raises(InputError, match="SALIENCY_R1_JUDGE_URL"):
        LLMJudge(JudgeConfig(model="m"))
    monkeypatch.setenv("SALIENCY_R1_JUDGE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SALIENCY_R1_JUDGE_MODEL", "m")
    assert LLMJudge(JudgeConfig()).url == "http://127.0.0.1:9/v1"


# ---------------------------------------------------------------------------------------------- saliency

GOOD = "<think>The circle is red and it is at the left.</think>red"


def _rows(sm, n_images=2, good=GOOD):
    images = [make_image(168, 140, seed=s) for s in range(n_images)]
    prompts = [[{"role": "user", "content": f"What colour is object {k}?"}] for k in range(n_images)]
    tok = sm.processor.tokenizer
    ids = tok(good, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return images, prompts, ids


def test_saliency_reward_equals_one_by_one_explain(tiny):
    """Batched reward (left-padded prompts, right-padded completions) == score_grid of explain()'s map."""
    images, prompts, ids = _rows(tiny)
    short = tiny.processor.tokenizer("<think>red</think>red", add_special_tokens=False)["input_ids"] + [
        tiny.processor.tokenizer.eos_token_id]
    boxes = [[[0, 0, 84, 70]], [[40, 30, 168, 140], [0, 0, 10, 10]]]
    reward = SaliencyReward("full", model=tiny.model, processor=tiny.processor, batch_size=2)
    out = reward(prompts, [GOOD, "<think>red</think>red"], [ids + [0, 0], short], image=images, boxes=boxes,
                 width=[168, 168], height=[140, 140])
    for k, (resp, got) in enumerate(zip([GOOD, "<think>red</think>red"], out)):
        res = tiny.explain(images[k], f"What colour is object {k}?", response=resp)
        want = score_grid(res.holistic[0].numpy(), (168, 140), boxes[k])
        assert got == pytest.approx(want, abs=1e-5) and 0.0 <= got <= 1.0
    assert reward.stats["traced"] == 2


@pytest.mark.parametrize("variant", ["full", "think", "answer", "attn"])
def test_saliency_variants_in_unit_interval(tiny, variant):
    images, prompts, ids = _rows(tiny, 1)
    reward = SaliencyReward(variant, model=lambda: tiny.model, processor=tiny.processor)
    logged = {}
    r = reward(prompts, [GOOD], [ids], image=images, boxes=[[[0, 0, 60, 60]]],
               log_metric=lambda k, v: logged.__setitem__(k, v))
    assert 0.0 <= r[0] <= 1.0
    assert logged["saliency/alignment"] == pytest.approx(r[0]) and logged["saliency/pg"] in (0.0, 1.0)
    assert reward.__name__ == "saliency"


def test_saliency_table_broken_formats_and_missing_boxes(tiny):
    images, prompts, ids = _rows(tiny, 1)
    tok = tiny.processor.tokenizer
    rows = [  # (completion text, ids, boxes, expected)
        (GOOD, ids, [[0, 0, 168, 140]], 1.0),                   # the whole image is the box
        ("red", tok("red")["input_ids"], [[0, 0, 50, 50]], 0.0),  # broken format: 0, not traced
        ("<think>a</think><think>b</think>red", ids, [[0, 0, 50, 50]], 0.0),  # doubled tags
        ("<think>r</think>", ids, [[0, 0, 50, 50]], 0.0),        # no answer
        (GOOD, ids, [], None),                                  # no boxes: None, counted
        (GOOD, ids, None, None),
        (GOOD, ids, [[500, 500, 600, 600]], None),              # box outside the image: None, counted
    ]
    reward = SaliencyReward("full", model=tiny.model, processor=tiny.processor)
    logged = {}
    out = reward(prompts * len(rows), [r[0] for r in rows], [r[1] for r in rows], image=images * len(rows),
                 boxes=[r[2] for r in rows], log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out[0] == pytest.approx(1.0) and out[1:] == [r[3] for r in rows[1:]]
    assert reward.stats["none_no_boxes"] == 2 and reward.stats["none_bad_region"] == 1
    assert reward.stats["format_broken"] == 3 and logged["saliency/none_rows"] == 3.0


def test_saliency_completion_with_image_placeholder_scores_zero(tiny):
    """A well-formed completion that holds a generated <|image_pad|> cannot be fed back with the prompt's
    images (the processor's features would not match): it scores 0, untraced, and is counted."""
    images, prompts, ids = _rows(tiny, 1)
    pad = tiny.model.config.image_token_id
    bad = ids[:2] + [pad] + ids[2:]
    reward = SaliencyReward("full", model=tiny.model, processor=tiny.processor)
    out = reward(prompts * 2, [GOOD, GOOD], [ids, bad], image=images * 2, boxes=[[[0, 0, 50, 50]]] * 2)
    assert out[0] is not None and out[1] == 0.0 and reward.stats["placeholder_tokens"] == 1


def test_saliency_empty_and_missing_maps(tiny, monkeypatch):
    """An all-zero map scores 0 (never NaN); text that looks well formed but ids without spans score 0."""
    import saliency_r1.rewards.saliency as mod

    images, prompts, ids = _rows(tiny, 1)
    monkeypatch.setattr(mod, "holistic_maps", lambda *a, **k: [[torch.zeros(5, 6)]])
    reward = SaliencyReward("full", model=tiny.model, processor=tiny.processor)
    assert reward(prompts, [GOOD], [ids], image=images, boxes=[[[0, 0, 50, 50]]]) == [0.0]
    monkeypatch.setattr(mod, "holistic_maps", lambda *a, **k: [None])
    assert reward(prompts, [GOOD], [ids], image=images, boxes=[[[0, 0, 50, 50]]]) == [0.0]
    no_tags = tiny.processor.tokenizer("red red", add_special_tokens=False)["input_ids"]
    assert reward(prompts, [GOOD], [no_tags], image=images, boxes=[[[0, 0, 50, 50]]]) == [0.0]
    assert reward.stats["no_spans"] == 1


def test_saliency_masks_region_and_images_in_prompt(tiny):
    images, _, ids = _rows(tiny, 1)
    prompt = [[{"role": "user", "content": [{"type": "image", "image": images[0]},
                                            {"type": "text", "text": "What colour is object 0?"}]}]]
    square = [[[0, 0], [84, 0], [84, 70], [0, 70]]]
    by_mask = SaliencyReward("full", model=tiny.model, processor=tiny.processor, region="masks")(
        prompt, [GOOD], [ids], boxes=[[[0, 0, 84, 70]]], masks=[square])
    by_box = SaliencyReward("full", model=tiny.model, processor=tiny.processor)(
        prompt, [GOOD], [ids], boxes=[[[0, 0, 84, 70]]])
    assert 0.0 <= by_mask[0] <= 1.0 and by_mask[0] == pytest.approx(by_box[0], abs=0.05)


def test_saliency_reward_is_one_forward_per_chunk_and_shares_vision(tiny, monkeypatch):
    import saliency_r1.rewards.saliency as mod

    calls = []
    real = mod.holistic_maps
    monkeypatch.setattr(mod, "holistic_maps", lambda *a, **k: calls.append(len(a[3])) or real(*a, **k))
    images, prompts, ids = _rows(tiny, 1)
    args = (prompts * 5, [GOOD] * 5, [ids] * 5)
    kw = dict(image=images * 5, boxes=[[[0, 0, 50, 50]]] * 5)
    shared = SaliencyReward("full", model=tiny.model, processor=tiny.processor, batch_size=3)(*args, **kw)
    assert calls == [3, 2]
    separate = SaliencyReward("full", model=tiny.model, processor=tiny.processor, share_vision=False)(*args, **kw)
    assert shared == pytest.approx(separate, abs=1e-6)  # one vision encode per prompt changes nothing


def test_saliency_reward_errors(tiny):
    from saliency_r1.errors import InputError

    with pytest.raises(InputError, match="variant"):
        SaliencyReward("holistic")
    with pytest.raises(InputError, match="bind"):
        SaliencyReward()([[{"role": "user", "content": "q"}]], [GOOD], None, boxes=[[[0, 0, 1, 1]]])
    with pytest.raises(InputError, match="boxes"):
        SaliencyReward(model=tiny.model, processor=tiny.processor)([[]], [GOOD], None)


def test_doctests():
    import saliency_r1.rewards._batch as batch
    import saliency_r1.rewards._text as text
    import saliency_r1.rewards.accuracy as acc
    import saliency_r1.rewards.format as fmt
    import saliency_r1.rewards.judge as judge
    import saliency_r1.rewards.saliency as sal

    for mod in (batch, text, acc, fmt, judge, sal):
        failed, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert failed == 0, mod.__name__
