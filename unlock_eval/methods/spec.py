"""What every transfer run's arguments share: its models (TransferModels) and its prompt pair (PromptTemplates).

Each method declares the rest of its arguments beside its engine code (methods/<name>/spec.py), once each: default,
help, parser and engine check (unlock_eval.params)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from unlock_eval.data import prompts
from unlock_eval.errors import ConfigError
from unlock_eval.params import as_int, as_raw_text, as_revision, param, parse_and_check


def _template(name: str, value: object) -> str:
    """A template as typed on a command line: `\\n` stands for a newline; it must hold the `{question}` slot."""
    return as_raw_text(name, value).replace("\\n", "\n")


def _positive_int(name: str, value: object) -> int:
    return as_int(name, value, minimum=1)


TEMPLATE_PRESETS_HELP = f"template preset: {' or '.join(prompts.CAPABILITIES)} (cot: the paper's pair); default cot"


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
