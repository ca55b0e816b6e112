"""lm-eval model classes of unlock-eval; `registry.MODELS` is the one table the start-up hook registers from.

Nothing is imported here, so the start-up hook can read the registry without loading torch or lm-eval.
"""
