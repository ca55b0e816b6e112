"""One generation pass for several alpha points: the batch is repeated once per extra alpha (each copy steered with
its own alpha, `steer(alpha=<one per row>)`), and the extra copies' answers are written into lm-eval's response
cache (`--use_cache`) under each alpha's own table, where a later run of that alpha finds them.

Each copy of a batch holds the same prompts with the same left padding as a run of its alpha alone, so the rows
are computed from the same inputs; only the batch is larger. The answers are finished exactly as HFLM finishes its
own (`finish_answer`, the lines of `HFLM.generate_until` after `_model_generate`) and keyed as lm-eval keys them
(`hash_args("generate_until", (context, gen_kwargs))`). Loglikelihood requests are not shared.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from unlock_eval.errors import ConfigError

logger = logging.getLogger("lm_eval.models.unlock")


@dataclass
class SharedPass:
    """The other alphas (`others`) one generate_until call of the model at `alpha` also generates for, the
    generation arguments of each prompt, and the answers collected batch by batch until `write`."""

    alpha: float
    others: list[float]
    gen_kwargs: dict[str, Any]
    cache_file: str
    answers: dict[float, list[tuple[Any, str]]]

    @classmethod
    def start(cls, requests, alpha: float, share_alphas: list[float] | None, cache_file: str | None):
        """The pass of these requests, or None (not asked, or sampling, whose answers lm-eval never serves from
        its cache)."""
        others = [a for a in share_alphas or () if a != alpha]
        if not others or not requests:
            return None
        check_cache(cache_file)
        if any(request.args[1].get("do_sample") for request in requests):
            logger.warning("unlock: share_alphas ignored for sampled generation (lm-eval does not cache it)")
            return None
        return cls(alpha, others, gen_kwargs_by_context(requests), cache_file, {a: [] for a in others})

    def expand(self, context: torch.Tensor, attention_mask: torch.Tensor):
        """The batch once per alpha, its mask, and the alpha of each row (for `steer`)."""
        return expand(context, attention_mask, [self.alpha, *self.others])

    def collect(self, lm, out: torch.Tensor, shape: tuple[int, int], stop: list[str]) -> torch.Tensor:
        """Keep the extra copies' answers (prompts: `lm._batch_contexts`); return the rows of the model's own alpha.
        `shape` is the (batch, width) of the prompts before `expand`."""
        batch, width = shape
        for copy, alpha in enumerate(self.others, 1):
            for tokens, prompt in zip(out[copy * batch : (copy + 1) * batch].tolist(), lm._batch_contexts):
                gen_kwargs = self.gen_kwargs.get(prompt)
                if gen_kwargs is not None:
                    self.answers[alpha].append(((prompt, gen_kwargs), finish_answer(lm, tokens, width, stop)))
        return out[:batch]

    def write(self, tables: dict[float, str]) -> None:
        """Store the collected answers, each alpha's in its `--use_cache` table (`tables`)."""
        written = write_answers(self.cache_file, tables, self.answers)
        logger.info("unlock: shared pass wrote %d answers for alpha %s into %s", written,
                    ", ".join(f"{a:g}" for a in self.others), self.cache_file)  # fmt: skip


def expand(context: torch.Tensor, attention_mask: torch.Tensor, alphas: list[float]):
    """The batch once per alpha (own alpha first) and the per-row alpha tensor for `steer`."""
    copies = len(alphas)
    rows = torch.tensor([alpha for alpha in alphas for _ in range(context.shape[0])])
    return context.repeat(copies, 1), attention_mask.repeat(copies, 1), rows


def finish_answer(lm, cont_toks: list[int], context_width: int, stop: list[str]) -> str:
    """A generated row as HFLM.generate_until turns it into the answer (prompt cut, thinking tokens, stop strings)."""
    from lm_eval.models.utils import postprocess_generated_text

    cont_toks = cont_toks[context_width:]
    if isinstance(lm.think_end_token, int):
        ends = [i for i, token in enumerate(cont_toks) if token == lm.think_end_token]
        if ends:
            cont_toks = cont_toks[ends[-1] + 1 :]
    text = lm.tok_decode(cont_toks)
    if isinstance(lm.think_end_token, int):
        text = text.lstrip()
    think = lm.think_end_token if isinstance(lm.think_end_token, str) else None
    return postprocess_generated_text(generation=text, stop=stop, think_end_token=think)


def gen_kwargs_by_context(requests) -> dict[str, Any]:
    """The generation arguments each prompt was requested with (part of lm-eval's cache key); None when one prompt
    comes with two different sets (its extra answers are then not cached)."""
    found: dict[str, Any] = {}
    for request in requests:
        context, gen_kwargs = request.args
        found[context] = gen_kwargs if found.get(context, gen_kwargs) == gen_kwargs else None
    return found


def write_answers(cache_file: str, tables: dict[float, str], answers: dict[float, list[tuple[Any, str]]]) -> int:
    """Store `(request args, answer)` pairs per alpha in that alpha's table of the cache file; returns how many."""
    from lm_eval.api.model import hash_args
    from sqlitedict import SqliteDict

    written = 0
    for alpha, pairs in answers.items():
        with SqliteDict(cache_file, tablename=tables[alpha], autocommit=False) as db:
            for args, answer in pairs:
                db[hash_args("generate_until", args)] = answer
                written += 1
            db.commit()
    return written


def check_cache(cache_file: str | None) -> str:
    if cache_file is None:
        raise ConfigError(
            "share_alphas writes the other alphas' answers into lm-eval's response cache: run with --use_cache PATH "
            "(and the other alphas with the same --use_cache)"
        )
    return cache_file
