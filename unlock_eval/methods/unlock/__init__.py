"""Unlock: MasterKey extraction (masterkey), subspace bases and alignment (bases, align), injection (steer),
the cached pipeline (extractor) and the per-layer diagnostics (diagnostics, diagnose)."""
