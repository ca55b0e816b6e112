"""What every transfer run records in its results file, under one versioned key, so methods are told apart."""

from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

RECORD_KEY = "unlock_eval"  # results["config"][RECORD_KEY], written by our models' get_model_info()
SCHEMA_VERSION = 1
ROLES = ("target", "source", "source_locked")  # the models of a transfer, as the record's `models` names them
METHODS = {
    "plain": "the target alone (--model hf on a locked task)",
    "prompted": "the target alone on a prompted-twin task (metadata unlock_prompt.prompted_of)",
    "native_steering": "--model unlock with source == target: the target steered with its own key",
    "unlock": "--model unlock: the source's key mapped into the target",
    "weight_transfer": "--model weight_transfer: θ_target + lam·(θ_source − θ_source_locked)",
    "logit_transfer": "--model logit_transfer: logits_target + lam·(logits_source − logits_source_locked)",
}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB: Linux's VmHWM (ru_maxrss would carry over the peak of
    the process that started this one), else ru_maxrss (bytes on macOS, KiB elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


@dataclass
class MethodRecord:
    """One run's method identity: which method, on which models (with identities), how configured, what it cost."""

    method: str
    models: dict[str, dict[str, Any]]  # role (target, source, source_locked) -> {"spec", "identity"}
    hyperparameters: dict[str, Any]
    setup_seconds: float
    setup_peak_rss_mb: float
    extra_forward_passes_per_token: float
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_run(
        cls, method: str, specs: dict[str, str], identities: dict[str, Any], setup_seconds: float, **fields: Any
    ) -> MethodRecord:
        """The record of a run set up in `setup_seconds` (peak memory read now); `specs` and `identities` give each
        role's model spec and identity; `fields`: hyperparameters, extra_forward_passes_per_token, details."""
        models = {role: {"spec": spec, "identity": identities[role]} for role, spec in specs.items()}
        return cls(method, models, setup_seconds=round(setup_seconds, 3), setup_peak_rss_mb=peak_rss_mb(), **fields)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r}: known methods are {', '.join(METHODS)}")

    def to_dict(self) -> dict[str, Any]:
        from unlock_eval import __version__  # the tool that made the run (the report's provenance names it)

        return {"schema_version": SCHEMA_VERSION, "unlock_eval_version": __version__, **asdict(self)}


def method_of(config: dict[str, Any], prompted: bool = False) -> str | None:
    """The method of a results file's `config` block: our record's, or `plain`/`prompted` for lm-eval's own
    `--model hf` or `--model vllm` (prompted when the task is a prompted twin); None for anything else."""
    record = config.get(RECORD_KEY)
    if isinstance(record, dict) and record.get("method") in METHODS:
        return record["method"]
    if config.get("model") in ("hf", "vllm"):
        return "prompted" if prompted else "plain"
    return None
