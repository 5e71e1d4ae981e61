"""Completion text: read it from TRL's completion forms (a string or a list of messages) and the prompt's question.

The response grammar itself (format rules, answer extraction, matching, spans) is
:mod:`saliency_r1.grammar`; the rewards use it unchanged.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError


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


__all__ = ["completion_text", "last_user_text"]
