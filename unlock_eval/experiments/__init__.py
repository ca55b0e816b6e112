"""Experiments that run lm-eval: sweep grids (grid), honest selection (selection), sweeps (sweep), the demo (demo).

They use the harness (model_adapters) and the engine; reports only read what they write."""
