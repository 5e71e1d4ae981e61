"""One response grammar: every stage that reads a response agrees with the rewards' own rules."""

from __future__ import annotations

import pytest

from saliency_r1 import grammar
from saliency_r1.data._context import split_response
from saliency_r1.evaluation.runner import check_response
from saliency_r1.rewards import accuracy_reward, format_reward

CASES = [
    ("<think>it is red</think>red", "red"),
    ("<think></think>red", "red"),                      # blank reasoning: malformed (the old demo regex said ok)
    ("<think>a</think><think>b</think>red", "red"),     # doubled block: malformed (the old demo regex said ok)
    ("<think>a<think>b</think></think>red", "red"),     # nested
    ("<think>x</think> <answer>The Circle.</answer>", "circle"),
    ("<think>x</think>Two", "2"),
    ("<think>x</think>", "red"),
    ("red", "red"),
    ("<think>x</think>(B) red", "B"),
    ("<think>x</think>Yes, it is.", "yes"),
    ("<think>x</think>red<|im_end|>", "red"),
]


@pytest.mark.parametrize("text,truth", CASES)
def test_evaluation_uses_the_rewards_rules(text, truth):
    fmt, correct, pred = check_response(text, truth)
    assert fmt == (format_reward(completions=[text])[0] == 1.0) == grammar.well_formed(text)
    assert correct == (accuracy_reward(completions=[text], answer=[truth])[0] == 1.0) == grammar.is_correct(text, truth)
    assert pred == grammar.extract_answer(text)


def test_definitions_that_moved():
    """The demo's old loose format regex and plain normalised equality disagreed with the rewards here."""
    assert not grammar.well_formed("<think></think>x")
    assert not grammar.well_formed("<think>a</think><think>b</think>x")
    assert grammar.is_correct("<think>x</think>The circle", "circle")   # articles dropped (was: 'the circle' != 'circle')
    assert grammar.is_correct("<think>x</think>three", "3")             # number words (was: unequal)


def test_spans_and_split():
    assert grammar.Spans((0, 2), (3, 4)).complete and not grammar.Spans(None, (3, 4)).complete
    assert split_response("<think>r</think><answer> B </answer>") == ("r", "B")
    assert split_response(3) == (None, "3")
    assert grammar.cut_at_end([1, 2, 9, 4], {9}) == [1, 2, 9]
