"""The arguments of an Unlock run (extraction, alignment, steering), each declared once; recorded verbatim."""

from __future__ import annotations

from dataclasses import dataclass

from unlock_eval.data import prompts
from unlock_eval.errors import ConfigError
from unlock_eval.methods.spec import PromptTemplates, TransferModels, _positive_int
from unlock_eval.methods.unlock import align, masterkey
from unlock_eval.methods.unlock.pack import check_pack_name
from unlock_eval.methods.unlock.profiles import PROFILE_HELP, parse_profile
from unlock_eval.methods.unlock.steer import DEFAULT_ALPHA, DEFAULT_MODE, MODES, check_alpha, check_mode
from unlock_eval.models import canonical_dtype
from unlock_eval.params import as_float_list, as_given, as_index_list, one_of, param

BACKENDS = {
    "hf": "transformers through lm-eval's HFLM: every request type, every HF model argument",
    "vllm": "vLLM (generation and loglikelihood; tensor_parallel_size, gpu_memory_utilization, max_model_len, ...)",
}


PROTOCOLS = {
    "unlock-eval": "our defaults (each stage's precision and choice as documented)",
    "reference": "every stage as the paper's official code: see REFERENCE_PRESET and docs/reproducing.md",
}
# What protocol=reference sets when the argument is not given (a given one wins). The evaluation dtype (bfloat16) is
# the engine's `dtype` argument: see UnlockSpec.default_dtype.
REFERENCE_PRESET = {
    "key_dtype": "bfloat16 for aggregator=mean, float32 for pca (hs_vector_simple.py / hs_vector_post_pca.py)",
    "align_dtype": "float32 (hs_svd.py, hs_svd_zero_centered.py)",
    "pca_sign": "raw (the SVD's own sign)",
    "arithmetic": "model (bf16 differences and injection, in the reference's order of operations)",
    "shared_template": "unlocked, for two checkpoints (the post-training runs prompt both with general-cot)",
    "max_new_tokens": "4096 for two checkpoints (the post-training runs); the tasks' 512 otherwise",
    "stop_strings": "none for two checkpoints (the post-training runs pass --ignore_stop_words)",
    "extract_batch_size": "1 (one prompt at a time, unpadded)",
}
STOP_STRINGS = {"task": "the task's `until` strings (ours)", "none": "only the tokenizer's end of text"}


def _stage_dtype(name: str, value: object) -> str:
    """A stage's dtype: any spelling `dtype` accepts, in its canonical name."""
    try:
        return canonical_dtype(value)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("dtype=", f"{name}=", 1)) from None


def _layers(name: str, value: object) -> list[int] | str | None:
    """all (None), aligned (resolved from the diagnostics at start-up) or a list of layer indices."""
    text = str(value).strip().lower()
    return None if text == "all" else "aligned" if text == "aligned" else as_index_list(name, value)


def _alphas(name: str, value: object) -> list[float]:
    """Alphas as typed on a command line (`0.1;0.2;0.5`, `[0.1,0.2]`) or a list: each a finite number."""
    return list(dict.fromkeys(as_float_list(name, value, "0.1;0.2;0.5")))


def _pack_paths(name: str, value: object) -> list[str]:
    """Capability pack files as typed on a command line: one path, or several as a.safetensors;b.safetensors."""
    parts = value if isinstance(value, (list, tuple)) else str(value).split(";")
    paths = [str(part).strip() for part in parts if str(part).strip()]
    if not paths:
        raise ConfigError(f"{name}={value!r}: expected a pack file, or several as a.safetensors;b.safetensors")
    for path in paths:
        check_pack_name(path, name)
    return paths


def _weights(name: str, value: object) -> list[float]:
    return as_float_list(name, value, "0.5;0.5 (one weight per pack)")


KEY_TARGET_CHECKS = {
    "identity": "the target must be the model the pack was made for (its content hash), and of its shape",
    "shape": "any target of the pack's decoder layer count and hidden size (a fine-tune of it, another copy)",
}


# what a capability pack fixed when it was made: not arguments of a run that steers with one (key=)
PACK_FIXED = (
    "source", "source_locked", "source_revision", "capability", "locked_template", "unlocked_template",
    "shared_template", "k", "n", "aggregator", "layer_map", "extract_from", "key_dtype", "align_dtype", "pca_sign",
    "extract_batch_size", "source_layers_path",
)  # fmt: skip


def _layer_map(name: str, value: object) -> str | list[int]:
    """A named map (letters: checked against align.LAYER_MAPS) or an explicit list of source layers."""
    if isinstance(value, str) and any(c.isalpha() for c in value):
        return value.strip()
    return as_index_list(name, value)


SHARED_TEMPLATE_HELP = "two checkpoints: the preset template both see, locked (default) or unlocked"
LAYER_MAP_HELP = f"{' or '.join(align.LAYER_MAPS)}, or one source layer per target layer as 0;2;4;..."
EXTRACT_FROM_HELP = (
    "gsm8k or math (train split: Hub, or UNLOCK_EVAL_DATA_DIR when set), arith (generated, offline) "
    "or a .jsonl with question/problem; opt-in, the reference's leak for test-only data: agieval_math_test, "
    "agieval_sat_math_test, math500_test (the last n test rows, flagged in record and report)"
)


@dataclass(kw_only=True)
class UnlockSpec(PromptTemplates, TransferModels):
    """Everything that defines an Unlock run (extraction, alignment, steering); recorded verbatim in the results."""

    backend: str = param(
        "hf", "the engine of the evaluation passes: hf or vllm (docs/backends.md)", check=one_of("backend", BACKENDS)
    )
    protocol: str = param(
        "unlock-eval",
        "unlock-eval or reference: reference sets every argument below it does not see given as the paper's code "
        "(key_dtype, align_dtype, pca_sign, arithmetic, shared_template, max_new_tokens, stop_strings; dtype=bfloat16)",
        check=one_of("protocol", PROTOCOLS),
    )
    shared_template: str | None = param(
        None, SHARED_TEMPLATE_HELP, check=one_of("shared_template", ("locked", "unlocked"))
    )
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
    key_dtype: str | None = param(
        None, "dtype of the source models while their key states are captured (default: dtype)", _stage_dtype
    )
    align_dtype: str | None = param(
        None, "dtype of source_locked and target while the map's states are captured (default: dtype)", _stage_dtype
    )
    pca_sign: str | None = param(
        None,
        "aggregator=pca: mean (default; the key points along the mean difference) or raw (the SVD's sign)",
        check=masterkey.check_pca_sign,
    )
    arithmetic: str | None = param(
        None,
        "float32 (default: key and injection in float32) or model (in the models' dtype, as the reference)",
        check=masterkey.check_arithmetic,
    )
    max_new_tokens: int | None = param(
        None, "new tokens per generation, overriding the task's max_gen_toks (default: the task's)", _positive_int
    )
    stop_strings: str | None = param(
        None,
        "task (default: the task's until strings) or none (only end of text)",
        check=one_of("stop_strings", STOP_STRINGS),
    )
    extract_batch_size: int | None = param(
        None,
        "batch size of the extraction forward passes (default 8; 1 under protocol=reference: one prompt at a time, "
        "unpadded, as the reference; in bf16 left padding moves the states)",
        _positive_int,
    )
    key: list[str] | None = param(
        None,
        "capability pack(s) to steer with instead of extracting (unlock-eval pack makes them; no source is loaded): "
        "a.safetensors, or several composed as a.safetensors;b.safetensors",
        _pack_paths,
    )
    key_weights: list[float] | None = param(
        None, "with several packs: the weight of each, as 0.7;0.3 (default 1 each; the directions are summed)", _weights
    )
    key_target_check: str = param(
        "identity",
        "identity (default: the pack's target model only) or shape (any target of its layer count and hidden size)",
        check=one_of("key_target_check", KEY_TARGET_CHECKS),
    )
    alpha_profile: str | list[float] | None = param(None, PROFILE_HELP, parse_profile)
    layers_path: str | None = param(None, "dotted path to the target's decoder layers; default: looked up")
    source_layers_path: str | None = param(None, "the same for source and source_locked (if not the target)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._apply_protocol()
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
        if self.key_weights is not None and (self.key is None or len(self.key_weights) != len(self.key)):
            packs = len(self.key or [])
            raise ConfigError(f"key_weights: {len(self.key_weights)} weights for {packs} packs in key= (one each)")
        if self.key is None and self.key_target_check != "identity":
            raise ConfigError(f"key_target_check={self.key_target_check}: applies to a capability pack given in key=")
        if self.key is not None and self.arithmetic == "model" and (len(self.key) > 1 or self.key_weights):
            raise ConfigError(
                "arithmetic=model injects one key as the reference's code does; composing packs (several in key=, "
                "or key_weights) needs arithmetic=float32"
            )
        if self.layers == "aligned" and self.key is None and self.target in (self.source, self.source_locked):
            raise ConfigError(
                "layers=aligned selects the layers where a transferred key is trustworthy; here the source is the "
                "target (native steering: nothing is transferred), so give layers=all or a list"
            )
        if not self.model_induced and self.locked_template == self.unlocked_template:
            raise ConfigError(
                "locked_template and unlocked_template are equal and source_locked == source: the key "
                "would be zero (give different templates, or a different source_locked)"
            )

    def _apply_protocol(self) -> None:
        """Fill the arguments not given: the reference's choices under protocol=reference, else ours."""
        reference = self.protocol == "reference"
        two_checkpoints = self.model_induced
        defaults = {
            "pca_sign": "raw" if reference else masterkey.DEFAULT_PCA_SIGN,
            "arithmetic": "model" if reference else masterkey.DEFAULT_ARITHMETIC,
            "stop_strings": "none" if reference and two_checkpoints else "task",
            "extract_batch_size": 1 if reference else 8,
        }
        if reference:
            defaults["key_dtype"] = "bfloat16" if self.aggregator == "mean" else "float32"
            defaults["align_dtype"] = "float32"
            if two_checkpoints:
                defaults["max_new_tokens"] = 4096
                if self.locked_template is None and self.unlocked_template is None:
                    defaults["shared_template"] = "unlocked"
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @property
    def default_dtype(self) -> str:
        """The evaluation dtype when `dtype` is not given: the checkpoint's own (lm-eval's `auto`), bfloat16 under
        protocol=reference (the reference evaluates in bf16)."""
        return "bfloat16" if self.protocol == "reference" else "auto"

    def layers_path_of(self, spec: str) -> tuple[str | None, str]:
        """(override, argument name) for the decoder-layer lookup of one of this run's models."""
        return (
            (self.layers_path, "layers_path")
            if spec == self.target
            else (self.source_layers_path, "source_layers_path")
        )
