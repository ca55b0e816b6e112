"""Behaviour metrics of generations: steps, degeneration, repetition, first-word entropy, from logged samples."""

import json
import os
from pathlib import Path

import pytest

from unlock_eval.reports import degeneration as rules
from unlock_eval.reports.behaviour import behaviour, entropy_bits, first_word, question_of, repetition
from unlock_eval.reports.degeneration import degenerate, step_structured, steps

GSM8K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k" / "test.jsonl"


QUESTION = "Ana has 3 apples. She gets 4 more apples. How many apples does Ana have now?"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Ana has 3 apples and gets 4 more.\nSo she has 3 + 4 = 7.\nThe final answer is <atok> 7", True),
        ("She has 3 + 4 = 7 apples. She eats none. So 7 - 0 = 7.\n#### 7", True),  # sentences on one line
        ("We add.\nWe divide.\nWe check.\n#### 7", False),  # three lines, no operation, no quantity
        ("1. Add them.\nThe final answer is <atok> 7", False),  # a numbered line alone is no step
        ("The final answer is <atok> 7\n3 + 4 = 7\n7 - 0 = 7", False),  # steps after the answer only
        ("7", False),
        ("We add 3 and 4 to get 7. The final answer is 7.", False),  # one step of prose
        ("Friend 1: 3\nFriend 2: 4\nFriend 3: 7", False),  # question quantities, but degenerate
    ],
)
def test_step_structure(text, expected):
    assert step_structured(text, QUESTION) is expected


# The issue's hand-labelled outputs (Unlock from SmolLM2, n=256, k=16, alpha 0.1; arith-style questions): counting
# lists that the old "three lines" rule called step-structured, four of them scored correct.
DEGENERATE = [
    ("Nia shares 18 stickers equally among 3 friends. How many friends share the stickers? ",
     "Friend 1:\nFriend 2:\nFriend 3:\nFriend 4:\nFriend 5:\nFriend 6:", "counting run"),
    ("Milo has 2 boxes with 3 cards in each box. How many friends can get one card?",
     "Friend 1:\nFriend 2:\nFriend 3:\nFriend 4:\nFriend 5:\nFriend 6:\nThe final answer is <atok> 6 </atok>.",
     "counting run"),
    ("Hana grooms 2 dogs in the morning and 3 in the afternoon. How many dogs does Hana groom?",
     "grooming\n1\n2\n3\n4\n5", "counting run"),
    ("Gus shares 9 marbles equally among 3 friends. How many marbles does each friend get?",
     "Friend 1: 3\nFriend 2: 3\nFriend 3: 3", "template lines"),
    ("Lena has 6 stickers and gives 2 to each of her friends. How many stickers are left?",
     "Friend A: 6 stickers\nFriend B: 4 stickers\nFriend C: 2 stickers\nFriend D: 0 stickers", "template lines"),
    ("Connor collects 10 shells on Monday and 20 shells on Tuesday. How many shells does he have?",
     "Connor:\n10 shells\n20 shells\n15 shells\n10 shells\n20 shells", "template lines"),
    ("Ana has 3 apples. She gets 4 more apples. How many apples does Ana have now?",
     "Ana has 7 apples.\nAna has 7 apples!\nAna has 7 apples.\nAna has 7 apples?\nThe answer",
     "near-identical lines"),
    ("Ana has 3 apples. She gets 4 more apples. How many apples does Ana have now?",
     "3 + 4 = 7\nok\n3 + 4 = 7\nsure\n3 + 4 = 7\n3 + 4 = 7", "near-identical lines"),
    ("Ana has 3 apples. She gets 4 more apples. How many apples does Ana have now?",
     "I am sorry, but I cannot help with that request today. Please ask me something else.", "off-topic"),
]  # fmt: skip

# Real step-by-step answers in our format (hand-written CoT)
COT = [
    ("Ana has 3 apples. She gets 4 more apples. How many apples does Ana have now?",
     "Let's think step by step.\nAna starts with 3 apples.\nShe gets 4 more, so she has 3 + 4 = 7 apples.\n"
     "The final answer is <atok> 7 </atok>."),
    ("Ben has 4 boxes with 5 pencils in each box. He gives away 6 pencils. How many pencils does Ben have left?",
     "Let's think step by step.\n1. The boxes hold 4 × 5 = 20 pencils.\n2. He gives away 6, so 20 - 6 = 14 remain.\n"
     "The final answer is <atok> 14 </atok>."),
    ("Chen shares 12 cookies equally among 3 friends. How many cookies does each friend get?",
     "Chen has 12 cookies and 3 friends.\nEach friend gets 12 divided by 3, which is 4 cookies.\n"
     "The final answer is <atok> 4 </atok>."),
    ("Dara reads 10 pages on Monday, 12 on Tuesday and 14 on Wednesday. How many pages does she read?",
     "Monday: 10 pages\nTuesday: 12 pages, so 10 + 12 = 22 so far\nWednesday: 14 pages, so 22 + 14 = 36\n"
     "The final answer is <atok> 36 </atok>."),
    ("Eli has 2 bags with 3 marbles in each bag and finds 5 more marbles. How many marbles does Eli have?",
     "Step 1: the bags hold 2 * 3 = 6 marbles.\nStep 2: with the 5 he finds, 6 + 5 = 11 marbles.\n"
     "The final answer is <atok> 11 </atok>."),
]  # fmt: skip


@pytest.mark.parametrize("question, text, reason", DEGENERATE)
def test_the_issue_outputs_are_degenerate_and_not_steps(question, text, reason):
    assert degenerate(text, question) == reason
    assert not step_structured(text, question)


@pytest.mark.parametrize("question, text", COT)
def test_step_by_step_answers_are_steps_and_not_degenerate(question, text):
    assert degenerate(text, question) is None and step_structured(text, question)


def test_each_rule_is_needed():
    """Switch one rule off at a time (a threshold no output reaches): its own examples are no longer flagged."""
    for name, reason in [("COUNT_RUN", "counting run"), ("TEMPLATE_RUN", "template lines")]:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(rules, name, 10**6)
            flagged = [degenerate(t, q) for q, t, r in DEGENERATE if r == reason]
            assert reason not in flagged, name
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rules, "NEAR_SHARE", 2.0)
        assert degenerate(DEGENERATE[6][1], DEGENERATE[6][0]) is None
        assert degenerate(DEGENERATE[7][1], DEGENERATE[7][0]) is None
        mp.setattr(rules, "OFF_TOPIC_MIN_WORDS", 10**6)
        assert degenerate(DEGENERATE[8][1], DEGENERATE[8][0]) is None


def test_terse_and_unknown_questions():
    assert degenerate("The final answer is <atok> 7 </atok>.", QUESTION) is None  # terse is not degenerate
    assert degenerate("I am sorry, but I cannot help with that request today. Please ask.") is None  # no question
    assert degenerate("Friend 1:\nFriend 2:\nFriend 3:") == "counting run"  # the form needs no question
    assert degenerate("The set is $\\{0,1,2,3,4\\}$ and 1 + 1 = 2.\nSo 2 + 3 = 5.") is None  # a set in math
    assert steps("3 + 4 = 7\nnice\n7 * 2 = 14") == 2  # operations count without the question
    assert question_of({"doc": {"question": "Q?"}}) == "Q?" and question_of({"doc": {"problem": "P?"}}) == "P?"
    assert question_of({}) == "" and question_of({"doc": "x"}) == ""


@pytest.mark.skipif(not GSM8K.is_file() and not os.environ.get("UNLOCK_EVAL_DATA_DIR"), reason="no GSM8K data")
def test_gsm8k_rationales_are_steps_and_not_degenerate():
    """GSM8K's reference rationales, real step-by-step answers: none degenerate, nearly all step-structured (a
    rationale of one sentence has one step)."""
    path = GSM8K if GSM8K.is_file() else Path(os.environ["UNLOCK_EVAL_DATA_DIR"]) / "gsm8k" / "test.jsonl"
    docs = [json.loads(line) for line in path.read_text().splitlines()[:200]]
    flagged = [(d["answer"], degenerate(d["answer"], d["question"])) for d in docs]
    assert [f for f in flagged if f[1]] == []
    structured = sum(step_structured(d["answer"], d["question"]) for d in docs) / len(docs)
    assert structured >= 0.97
    b = behaviour([{"doc": d, "resps": [[d["answer"]]]} for d in docs])
    assert b.degenerate == 0 and b.step_structured == structured


def test_repetition_first_word_and_entropy():
    assert repetition("a b c d a b c d") == pytest.approx(1 - 4 / 5)  # 5 four-grams, 4 distinct
    assert repetition("one two three") == 0.0 and repetition("") == 0.0
    assert first_word("  Step 1: add") == "step" and first_word("$18") == "$" and first_word("") == "(empty)"
    from collections import Counter

    assert entropy_bits(Counter({"a": 2, "b": 2})) == pytest.approx(1.0) and entropy_bits(Counter({"a": 5})) == 0.0


def test_behaviour_of_samples():
    samples = [
        {"resps": [["Step 1: 3 + 4 = 7.\nStep 2: 7 * 1 = 7.\nThe final answer is 7"]], "answer_found": 1.0},
        {"resps": [["Step 1: subtract.\nStep 2: done."]], "answer_found": 0.0},
        {"resps": [["The answer is 3"]], "answer_found": 1.0},
        {"resps": [["the the the the the"]]},
    ]
    b = behaviour(samples)
    assert b.samples == 4 and b.step_structured == 0.25 and b.answer_found == pytest.approx(2 / 3)
    assert b.degenerate == 0 and b.degenerate_reasons == {} and b.reasons_text() == ""
    assert b.repetition == pytest.approx((1 - 1 / 2) / 4)  # "the the the the the": 2 four-grams, 1 distinct
    assert b.top_first_words[0] == ("step", 0.5) and b.first_word_entropy == pytest.approx(1.0)  # step, step, the, the
    assert b.top_words_text(2) == "step 50%, the 50%"
    assert behaviour([]) is None
    assert str(behaviour([{"resps": [["x"]]}, {"resps": [["x y"]]}]).first_word_entropy) == "0.0"  # not -0.0
    quoted = [{"doc": {"question": q}, "resps": [[t]]} for q, t, _ in DEGENERATE[:6]]
    cot = [{"doc": {"question": q}, "resps": [[t]]} for q, t in COT[:2]]
    b = behaviour(quoted + cot)
    assert b.degenerate == 0.75 and b.step_structured == 0.25
    assert b.degenerate_reasons == {"counting run": 0.375, "template lines": 0.375}
    assert b.reasons_text() == "counting run 38%, template lines 38%"
