"""Behaviour metrics of generations: step structure, repetition, first-word entropy, from logged samples."""

import pytest

from unlock_eval.reports.behaviour import behaviour, entropy_bits, first_word, repetition, step_structured


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1. Add 3 and 4.\nThe final answer is <atok> 7", True),  # a numbered step before the answer
        ("First, add them. Then divide.\nThe final answer is 7", True),  # a sequencing word opens a line
        ("We add.\nWe divide.\nWe check.\n#### 7", True),  # three lines before the answer
        ("The final answer is <atok> 7\n1. because\n2. reasons\n3. more", False),  # steps after the answer only
        ("7", False),
        ("We add 3 and 4 to get 7. The final answer is 7.", False),  # one line of prose
    ],
)
def test_step_structure(text, expected):
    assert step_structured(text) is expected


def test_repetition_first_word_and_entropy():
    assert repetition("a b c d a b c d") == pytest.approx(1 - 4 / 5)  # 5 four-grams, 4 distinct
    assert repetition("one two three") == 0.0 and repetition("") == 0.0
    assert first_word("  Step 1: add") == "step" and first_word("$18") == "$" and first_word("") == "(empty)"
    from collections import Counter

    assert entropy_bits(Counter({"a": 2, "b": 2})) == pytest.approx(1.0) and entropy_bits(Counter({"a": 5})) == 0.0


def test_behaviour_of_samples():
    samples = [
        {"resps": [["Step 1: add.\nThe final answer is 7"]], "answer_found": 1.0},
        {"resps": [["Step 1: subtract.\nStep 2: done."]], "answer_found": 0.0},
        {"resps": [["The answer is 3"]], "answer_found": 1.0},
        {"resps": [["the the the the the"]]},
    ]
    b = behaviour(samples)
    assert b.samples == 4 and b.step_structured == 0.5 and b.answer_found == pytest.approx(2 / 3)
    assert b.repetition == pytest.approx((1 - 1 / 2) / 4)  # "the the the the the": 2 four-grams, 1 distinct
    assert b.top_first_words[0] == ("step", 0.5) and b.first_word_entropy == pytest.approx(1.0)  # step, step, the, the
    assert b.top_words_text(2) == "step 50%, the 50%"
    assert behaviour([]) is None
    assert str(behaviour([{"resps": [["x"]]}, {"resps": [["x y"]]}]).first_word_entropy) == "0.0"  # not -0.0
