"""Data: benchmark files and Hub sets (benchmarks), capability templates and extraction questions (prompts), the
generated arithmetic set (arith) and the seeded dev/test selection splits (splits)."""
