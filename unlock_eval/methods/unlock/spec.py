"""The arguments of an Unlock run (extraction, alignment, steering), each declared once; recorded verbatim."""

from __future__ import annotations

from dataclasses import dataclass

from unlock_eval.data import prompts
from unlock_eval.errors import ConfigError
from unlock_eval.methods.spec import PromptTemplates, TransferModels, _positive_int
from unlock_eval.methods.unlock import align, masterkey
from unlock_eval.methods.unlock.steer import DEFAULT_ALPHA, DEFAULT_MODE, MODES, check_alpha, check_mode
from unlock_eval.params import as_float, as_given, as_index_list, param


def _check_shared_template(value: str) -> None:
    if value not in ("locked", "unlocked"):
        raise ConfigError(f"shared_template={value!r}: allowed values are locked, unlocked")


BACKENDS = {
    "hf": "transformers through lm-eval's HFLM: every request type, every HF model argument",
    "vllm": "vLLM (generation and loglikelihood; tensor_parallel_size, gpu_memory_utilization, max_model_len, ...)",
}


def _check_backend(value: str) -> None:
    if value not in BACKENDS:
        raise ConfigError(f"backend={value!r}: allowed values are {', '.join(BACKENDS)}")


def _layers(name: str, value: object) -> list[int] | str | None:
    """all (None), aligned (resolved from the diagnostics at start-up) or a list of layer indices."""
    text = str(value).strip().lower()
    return None if text == "all" else "aligned" if text == "aligned" else as_index_list(name, value)


def _alphas(name: str, value: object) -> list[float]:
    """Alphas as typed on a command line (`0.1;0.2;0.5`, `[0.1,0.2]`) or a list: each a finite number."""
    parts = value if isinstance(value, (list, tuple)) else str(value).strip().strip("[]").replace(";", " ").split()
    values = [as_float(name, part) for part in parts]
    if not values:
        raise ConfigError(f"{name}={value!r}: expected alphas like 0.1;0.2;0.5")
    return list(dict.fromkeys(values))


def _layer_map(name: str, value: object) -> str | list[int]:
    """A named map (letters: checked against align.LAYER_MAPS) or an explicit list of source layers."""
    if isinstance(value, str) and any(c.isalpha() for c in value):
        return value.strip()
    return as_index_list(name, value)


SHARED_TEMPLATE_HELP = "two checkpoints: the preset template both see, locked (default) or unlocked"
LAYER_MAP_HELP = f"{' or '.join(align.LAYER_MAPS)}, or one source layer per target layer as 0;2;4;..."
EXTRACT_FROM_HELP = (
    "gsm8k or math (train split: Hub, or UNLOCK_EVAL_DATA_DIR when set), arith (generated, offline) "
    "or a .jsonl with question/problem"
)


@dataclass(kw_only=True)
class UnlockSpec(PromptTemplates, TransferModels):
    """Everything that defines an Unlock run (extraction, alignment, steering); recorded verbatim in the results."""

    backend: str = param(
        "hf", "the engine of the evaluation passes: hf or vllm (docs/backends.md)", check=_check_backend
    )
    shared_template: str | None = param(None, SHARED_TEMPLATE_HELP, check=_check_shared_template)
    alpha: float = param(DEFAULT_ALPHA, "steering strength, finite", as_given, check_alpha)
    k: int = param(align.DEFAULT_K, "subspace rank, k <= n (k <= n - 1 with pca)", _positive_int)
    n: int = param(prompts.DEFAULT_N, "number of extraction prompts", _positive_int)
    aggregator: str = param(
        masterkey.DEFAULT_AGGREGATOR, " or ".join(masterkey.AGGREGATORS), check=masterkey.check_aggregator
    )
    mode: str = param(DEFAULT_MODE, " or ".join(MODES), check=check_mode)
    layers: list[int] | str | None = param(
        None,
        "target layers to steer: all (default), 3-10 (inclusive), 3;5;7, or aligned (a transferred key's layers "
        "that pass the diagnostics: held-out R² > 0 and, prompt-induced, agreement in sign with the target's own key)",
        _layers,
    )
    layer_map: str | list[int] = param(align.DEFAULT_LAYER_MAP, LAYER_MAP_HELP, _layer_map, align.check_layer_map)
    extract_from: str = param(prompts.DEFAULT_EXTRACT_FROM, EXTRACT_FROM_HELP, check=prompts.check_extraction_source)
    share_alphas: list[float] | None = param(
        None,
        "more alphas generated in the same pass (extra batch rows), their answers written to --use_cache for their "
        "own runs, as 0.1;0.2;0.5 (unlock-eval sweep sets it)",
        _alphas,
    )
    extract_batch_size: int = param(8, "batch size of the extraction forward passes", _positive_int)
    layers_path: str | None = param(None, "dotted path to the target's decoder layers; default: looked up")
    source_layers_path: str | None = param(None, "the same for source and source_locked (if not the target)")

    def __post_init__(self) -> None:
        super().__post_init__()
        explicit = self.locked_template is not None or self.unlocked_template is not None
        if explicit and self.model_induced and self.capability and self.shared_template:
            # a spec rebuilt from its own recorded fields (as_dict): the shared template it resolved to before
            shared = getattr(prompts.CAPABILITIES[self.capability], f"{self.shared_template}_template", None)
            explicit = not (self.locked_template == self.unlocked_template == shared)
        if self.capability is None and not explicit:
            self.capability = prompts.DEFAULT_CAPABILITY
        if self.shared_template is not None and not (self.model_induced and self.capability and not explicit):
            raise ConfigError(
                "shared_template applies to two checkpoints (source_locked != source) templated by a "
                "capability preset; here give locked_template/unlocked_template or drop it"
            )
        if self.model_induced and self.capability and not explicit:
            # two checkpoints, one template (DESIGN §1): the key is the post-training difference alone
            self.shared_template = self.shared_template or "locked"
            shared = getattr(prompts.CAPABILITIES[self.capability], f"{self.shared_template}_template")
            self.locked_template = self.unlocked_template = shared
        self.fill_templates()
        align.check_rank(self.k, self.n, center=masterkey.centers(self.aggregator))
        if self.source_layers_path and {self.source, self.source_locked} <= {self.target}:
            raise ConfigError(
                "source_layers_path: the source is the target here (native steering), so layers_path applies to it"
            )
        if self.layers == "aligned" and self.target in (self.source, self.source_locked):
            raise ConfigError(
                "layers=aligned selects the layers where a transferred key is trustworthy; here the source is the "
                "target (native steering: nothing is transferred), so give layers=all or a list"
            )
        if not self.model_induced and self.locked_template == self.unlocked_template:
            raise ConfigError(
                "locked_template and unlocked_template are equal and source_locked == source: the key "
                "would be zero (give different templates, or a different source_locked)"
            )

    def layers_path_of(self, spec: str) -> tuple[str | None, str]:
        """(override, argument name) for the decoder-layer lookup of one of this run's models."""
        return (
            (self.layers_path, "layers_path")
            if spec == self.target
            else (self.source_layers_path, "source_layers_path")
        )
