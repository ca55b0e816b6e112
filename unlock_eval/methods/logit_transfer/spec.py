"""The arguments of a logit-difference transfer run (proxy-tuning), each declared once."""

from __future__ import annotations

from dataclasses import dataclass

from unlock_eval.data import prompts
from unlock_eval.errors import ConfigError
from unlock_eval.methods.spec import PromptTemplates, TransferModels
from unlock_eval.params import as_float, param


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
