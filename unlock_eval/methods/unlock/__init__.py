"""Unlock: MasterKey extraction (masterkey), subspace bases and alignment (bases, align), injection (steer),
the cached pipeline (extractor, its cache keys: artifact_keys) and the per-layer diagnostics (diagnostics, the
statistics behind them: measures, their cache: diagnostics_cache)."""
