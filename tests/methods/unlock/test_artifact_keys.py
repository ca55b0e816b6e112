"""Artifact cache keys are a storage format: the same inputs give the same key in every release (a changed key
silently orphans every cache built before it). The values below were computed by the code before the Extractor
was split into model pool, identities and these key builders, and must stay."""

from unlock_eval.cache import fingerprint
from unlock_eval.methods.unlock import artifact_keys as keys

IDENTITY = {"spec": "m", "sha": "abc"}
QUESTIONS = ["q1", "q2", "q3"]
TEMPLATE = "Q: {question}\n"


def test_states_keys_are_pinned():
    states = fingerprint(keys.states_parts(IDENTITY, TEMPLATE, QUESTIONS, "float32"))
    assert states == "ce10593c6903cba77ebf3e7e"
    with_path = keys.states_parts(IDENTITY, TEMPLATE, QUESTIONS, "float32", "model.layers")
    assert fingerprint(with_path) == "6b0f00ff9afa6f7a24a2958c"
    assert fingerprint(keys.bases_parts(states, True)) == "e1e80b0a8d9a2f60b2451511"


def test_key_map_and_diagnostics_keys_are_pinned():
    states = "ce10593c6903cba77ebf3e7e"
    ref = keys.states_ref("m", IDENTITY, states, "T")
    assert fingerprint(keys.masterkey_parts(ref, ref, "mean", QUESTIONS, "float32")) == "fcfb315d84915eb78fc38987"
    plain = keys.states_ref("m", IDENTITY, states)
    parts = keys.subspace_map_parts(plain, plain, "T", QUESTIONS, "float32", 2, False, "relative_depth")
    assert fingerprint(parts) == "e905a5b5fbcb00b8a6a4ff04"
    assert fingerprint(keys.diagnostics_parts([states, states], 2, "pca", 5, [0, 1])) == "6b31876b5734dcae5ab7adc8"


def test_every_input_changes_the_states_key():
    base = fingerprint(keys.states_parts(IDENTITY, TEMPLATE, QUESTIONS, "float32"))
    variants = [
        keys.states_parts({**IDENTITY, "sha": "abd"}, TEMPLATE, QUESTIONS, "float32"),
        keys.states_parts(IDENTITY, TEMPLATE + " ", QUESTIONS, "float32"),
        keys.states_parts(IDENTITY, TEMPLATE, QUESTIONS[:2], "float32"),
        keys.states_parts(IDENTITY, TEMPLATE, QUESTIONS, "bfloat16"),
    ]
    assert len({base, *map(fingerprint, variants)}) == 5
