"""The arguments of a transfer run, each declared once (default, help, parser, engine check); adapters share them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from . import align, masterkey, prompts
from .errors import ConfigError
from .merge import VOCAB_MODES, check_vocab
from .params import as_float, as_index_list, as_int, as_raw_text, as_revision, param, parse_and_check
from .steer import DEFAULT_ALPHA, DEFAULT_MODE, MODES, check_alpha, check_mode  # `steer` is also a function name


def _template(name: str, value: object) -> str:
    """A template as typed on a command line: `\\n` stands for a newline; it must hold the `{question}` slot."""
    return as_raw_text(name, value).replace("\\n", "\n")


def _positive_int(name: str, value: object) -> int:
    return as_int(name, value, minimum=1)


def _check_shared_template(value: str) -> None:
    if value not in ("locked", "unlocked"):
        raise ConfigError(f"shared_template={value!r}: allowed values are locked, unlocked")


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


TEMPLATE_PRESETS_HELP = f"template preset: {' or '.join(prompts.CAPABILITIES)} (cot: the paper's pair); default cot"
SHARED_TEMPLATE_HELP = "two checkpoints: the preset template both see, locked (default) or unlocked"
LAYER_MAP_HELP = f"{' or '.join(align.LAYER_MAPS)}, or one source layer per target layer as 0;2;4;..."
EXTRACT_FROM_HELP = (
    "gsm8k or math (train split: Hub, or UNLOCK_EVAL_DATA_DIR when set), arith (generated, offline) "
    "or a .jsonl with question/problem"
)


@dataclass(kw_only=True)
class TransferModels:
    """The models of a cross-model transfer: the target evaluated, the source variants the capability comes from."""

    target: str = param(help="model to evaluate: hub id, local dir, .gguf file or embedded name")
    source: str | None = param(None, "model with the capability (unlocked); default: target (native steering)")
    source_locked: str | None = param(
        None, "model without it (locked); default: source; another checkpoint: model-induced"
    )
    source_revision: str | None = param(
        None, "hub revision of the source models (the target's is revision=)", as_revision
    )
    cache_dir: str | None = param(
        None, "artifacts, converted and merged models; default: UNLOCK_EVAL_CACHE_DIR or user cache"
    )

    def __post_init__(self) -> None:
        self.source = self.source or self.target
        self.source_locked = self.source_locked or self.source
        if self.source_revision and self.source == self.target:
            raise ConfigError(
                "source_revision: source == target here, so the target's revision= applies; one model "
                "at two revisions is not supported"
            )
        parse_and_check(self)

    @property
    def model_induced(self) -> bool:
        """Two checkpoints (post-trained vs base) rather than one model under two templates."""
        return self.source_locked != self.source

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(kw_only=True)
class PromptTemplates:
    """The locked/unlocked prompt pair of a prompt-induced capability: a preset, or two explicit templates."""

    capability: str | None = param(None, TEMPLATE_PRESETS_HELP, check=prompts.check_capability)
    locked_template: str | None = param(None, "locked prompt with a {question} slot (overrides capability)", _template)
    unlocked_template: str | None = param(None, "unlocked prompt, {question} slot (overrides capability)", _template)

    def fill_templates(self) -> None:
        """Templates not given come from the preset; both must then hold the {question} slot."""
        preset = prompts.CAPABILITIES.get(self.capability or "")
        for name in ("locked_template", "unlocked_template"):
            value = getattr(self, name) or getattr(preset, name, None)
            if value is None:
                raise ConfigError(f"{name} is required when the other template is given without a capability")
            setattr(self, name, prompts.check_template(name, value))


@dataclass(kw_only=True)
class UnlockSpec(PromptTemplates, TransferModels):
    """Everything that defines an Unlock run (extraction, alignment, steering); recorded verbatim in the results."""

    shared_template: str | None = param(None, SHARED_TEMPLATE_HELP, check=_check_shared_template)
    alpha: float = param(DEFAULT_ALPHA, "steering strength, finite", as_float, check_alpha)
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
        align.check_rank(self.k, self.n, center=self.aggregator == "pca")
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


@dataclass(kw_only=True)
class WeightTransferSpec(TransferModels):
    """Task arithmetic: θ_target + lam·(θ_source − θ_source_locked); three checkpoints of one architecture."""

    source: str = param(help="the post-trained model whose weight delta is transferred (unlocked)")
    source_locked: str = param(help="the model it was post-trained from (locked): the delta is source - this")
    lam: float = param(1.0, "delta weight: target + lam * (source - source_locked), finite", as_float)
    vocab: str = param(
        VOCAB_MODES[0],
        "exact (vocabulary row counts must match) or shared_prefix (merge the shared rows after checking the "
        "tokenizers agree on them)",
        check=check_vocab,
    )


@dataclass(kw_only=True)
class LogitTransferSpec(PromptTemplates, TransferModels):
    """Proxy-tuning: logits_target + lam·(logits_source − logits_source_locked) at every step. One source model
    under the locked and unlocked templates (prompt-induced), or two checkpoints on the target's prompt."""

    source: str | None = param(None, "model with the capability (unlocked); default: target")
    source_locked: str | None = param(
        None, "model without it; default: source (prompt-induced: the templates make the difference)"
    )
    lam: float = param(1.0, "logit weight: target + lam * (source - source_locked), finite", as_float)

    def __post_init__(self) -> None:
        super().__post_init__()
        given = [n for n in ("capability", "locked_template", "unlocked_template") if getattr(self, n) is not None]
        if self.model_induced:
            if given:
                raise ConfigError(
                    f"{', '.join(given)}: templates apply to the prompt-induced regime (source_locked == source); "
                    "with two checkpoints both see the target's own prompt"
                )
            return
        if not given:
            self.capability = prompts.DEFAULT_CAPABILITY
        self.fill_templates()
        if self.locked_template == self.unlocked_template:
            raise ConfigError(
                "locked_template and unlocked_template are equal and source_locked == source: the logit "
                "difference would be zero (give different templates, or a different source_locked)"
            )

    @property
    def regime(self) -> str:
        return "model_induced" if self.model_induced else "prompt_induced"
