"""Logit-difference transfer (proxy-tuning): the per-step logit mixing (mix); adapter: model_adapters/logit_transfer."""
