"""The transfer methods, one folder each: `unlock` (the paper's method), `weight_transfer`, `logit_transfer`.

Each holds its engine code beside its run arguments; the lm-eval adapter of the same name is in model_adapters/.
"""
