"""Completion text: read it from TRL's completion forms and split it into reasoning and answer.

The response format (method.md §4, :func:`saliency_r1.data.format_response`) is
``<think>{reasoning}</think>{answer}``. A response is *well formed* when, after trailing end-of-turn
markers and surrounding whitespace are removed:

1. it starts with ``<think>``;
2. it holds exactly one ``<think>`` and exactly one ``</think>``, in that order: doubled blocks
   (``<think>a</think><think>b</think>x``) and nested tags (``<think>a<think>b</think></think>x``)
   are malformed;
3. the reasoning between the tags is not blank;
4. a non-blank answer follows ``</think>``; an ``<answer>…</answer>`` wrapper is allowed and removed.

The *answer* used for accuracy is read leniently, so that each reward measures one thing: the text
after the last ``</think>`` (``<answer>`` tags removed), or the whole response, tags removed, when
there is no ``</think>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

OPEN, CLOSE = "<think>", "</think>"
END_MARKERS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>")
_ANSWER_TAGS = re.compile(r"^\s*<answer>(.*?)</answer>\s*$", re.S)


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or TRL's conversational form (a list of message dicts).

    Message ``content`` may be a string or a list of typed blocks; assistant messages are joined.

    >>> completion_text([{"role": "assistant", "content": "<think>x</think>y"}])
    '<think>x</think>y'
    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "hi"}]}])
    'hi'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        raise InputError(f"a completion must be a string or a list of messages, not {type(completion).__name__}")
    parts = []
    for message in completion:
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return "".join(parts)


def _strip_end(text: str) -> str:
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for marker in END_MARKERS:
            if text.endswith(marker):
                text, changed = text[: -len(marker)].rstrip(), True
    return text


def _unwrap_answer(text: str) -> str:
    m = _ANSWER_TAGS.match(text)
    return (m.group(1) if m else text).strip()


@dataclass(frozen=True)
class ParsedResponse:
    """A response split by the format rules (module docstring); ``problem`` says why it is malformed."""

    reasoning: str | None
    answer: str | None
    problem: str | None = None

    @property
    def well_formed(self) -> bool:
        return self.problem is None


def parse_response(text: str) -> ParsedResponse:
    """Split a response into reasoning and answer under the strict format rules.

    >>> parse_response("<think>red circle</think> red").answer
    'red'
    >>> parse_response("<think>a</think><think>b</think>x").problem
    'more than one <think> or </think> tag'
    """
    t = _strip_end(text)
    if not t.startswith(OPEN):
        return ParsedResponse(None, None, "does not start with <think>")
    if t.count(OPEN) != 1 or t.count(CLOSE) != 1:
        return ParsedResponse(None, None, "more than one <think> or </think> tag" if t.count(CLOSE) else
                              "no </think> tag")
    reasoning, answer = t[len(OPEN):].split(CLOSE, 1)
    answer = _unwrap_answer(answer)
    if not reasoning.strip():
        return ParsedResponse(None, answer or None, "empty reasoning")
    if not answer:
        return ParsedResponse(reasoning.strip(), None, "no answer after </think>")
    return ParsedResponse(reasoning.strip(), answer)


def extract_answer(text: str) -> str:
    """The answer read leniently: after the last ``</think>``, else the whole text without tags.

    >>> extract_answer("<think>a</think><think>b</think> <answer>Blue</answer>")
    'Blue'
    >>> extract_answer("just 3")
    'just 3'
    """
    t = _strip_end(text)
    if CLOSE in t:
        t = t.rsplit(CLOSE, 1)[1]
    return _unwrap_answer(t.replace(OPEN, "").replace(CLOSE, ""))


def last_user_text(prompt: Any) -> str:
    """The text of the last user message of a conversational prompt (or the prompt string itself).

    >>> last_user_text([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Why?"}]}])
    'Why?'
    """
    if isinstance(prompt, str):
        return prompt
    for message in reversed(list(prompt or [])):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")
    return ""


__all__ = ["completion_text", "parse_response", "ParsedResponse", "extract_answer", "last_user_text", "OPEN",
           "CLOSE", "END_MARKERS"]
