"""`lm_eval --model logit_transfer` (proxy-tuning): HFLM on the target, its logits shifted at every step by
lam·(source − source_locked), the two sources stepped beside it with KV caches of their own."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from unlock_eval.cache import fingerprint
from unlock_eval.data.prompts import recover_question, render
from unlock_eval.errors import ConfigError
from unlock_eval.method import ROLES, MethodRecord
from unlock_eval.methods.logit_transfer.mix import SourceStepper, check_vocabularies, logit_rows, mixed_logits
from unlock_eval.methods.logit_transfer.spec import LogitTransferSpec
from unlock_eval.model_adapters.arguments import resolve_roles
from unlock_eval.model_adapters.base import PROMPT_PASS_GEN_KWARGS, TransferLM, refuse_gen_kwargs
from unlock_eval.models import load_model, load_tokenizer

logger = logging.getLogger("lm_eval.models.logit_transfer")


class LogitTransferLM(TransferLM):
    """Proxy-tuning as an lm-eval model, for generate_until (greedy or sampled), loglikelihood and (with two
    checkpoints) loglikelihood_rolling. Prompt-induced (one source model): `source` reads the unlocked template
    and `source_locked` the locked one, each filled with the request's question and followed by the same tokens."""

    MODEL, SPEC = "logit_transfer", LogitTransferSpec

    def __init__(self, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        spec, hf_kwargs = self._parse(kwargs)
        self.transfer_config: LogitTransferSpec = spec
        specs = {role: getattr(spec, role) for role in ROLES}
        revisions = {role: spec.source_revision if specs[role] != spec.target else None for role in ROLES}
        revisions["target"] = hf_kwargs.get("revision")
        resolved = resolve_roles(spec, revisions)
        identities = {role: resolved[role].identity for role in ROLES}
        # the vocabulary check needs tokenizers only: a refusal comes before any model is loaded
        tokenizers = {}
        for role in ROLES:
            twin = next((r for r in tokenizers if identities[r] == identities[role]), None)
            tokenizers[role] = tokenizers[twin] if twin else load_tokenizer(resolved[role])
        check_vocabularies(tokenizers, specs)
        self._start(resolved["target"].pretrained, hf_kwargs)
        self.tokenizer.padding_side = "left"
        models = {"target": self.model}
        for role in ("source", "source_locked"):
            twin = next((r for r in models if identities[r] == identities[role]), None)
            models[role] = models[twin] if twin else self._load_source(role, revisions[role], hf_kwargs)
        self.source_models, self.source_tokenizers = models, {"target": self.tokenizer, **tokenizers}
        # the columns all three emit: beyond them lie the sources' extra ids (dropped) or the target's padding rows
        self.vocab = min(logit_rows(m) for m in models.values())
        self.prompt_induced = not spec.model_induced
        if self.prompt_induced:
            self.logits_cache = False  # one scoring row per request: its source prompts are its own
        self.cache_table = self._table(
            fingerprint({"ids": identities, "lam": spec.lam, "t": [spec.locked_template, spec.unlocked_template]})
        )
        setup = time.perf_counter() - t0
        batched = models["source"] is models["source_locked"]
        self.run_record = MethodRecord.of_run(
            "logit_transfer",
            specs,
            identities,
            setup,
            hyperparameters={
                "lam": spec.lam,
                "regime": spec.regime,
                "capability": spec.capability,
                "locked_template": spec.locked_template,
                "unlocked_template": spec.unlocked_template,
            },
            extra_forward_passes_per_token=2,  # the two source sequences, beside the target's own pass
            details={
                "source_forward_calls_per_token": 1 if batched else 2,  # one batched call when one checkpoint
                "vocab_columns_mixed": self.vocab,
                "source_revision": spec.source_revision,
            },
        )
        logger.info("logit_transfer (%s): ready in %.1f s", spec.regime, setup)

    def _load_source(self, role: str, revision: str | None, hf_kwargs: dict[str, Any]):
        cfg = self.transfer_config
        try:
            model, _ = load_model(
                getattr(cfg, role), hf_kwargs["dtype"], str(self.device), revision=revision, cache_dir=cfg.cache_dir
            )
        except ConfigError as exc:
            raise ConfigError(f"{role}: {exc}") from None
        return model

    def _stepper(self) -> SourceStepper:
        return SourceStepper(self.source_models["source"], self.source_models["source_locked"], self.vocab)

    # ------------------------------------------------------------------ the sources' prompts (prompt-induced)
    def _prompt_pair(self, request) -> tuple[str, str]:
        """(unlocked, locked) prompts for one request: from its document's question, or recovered from its prompt."""
        cfg, context = self.transfer_config, request.args[0]
        doc = request.doc if isinstance(request.doc, dict) else {}
        question = doc.get("question", doc.get("problem"))
        if isinstance(question, str):  # the document's question: the prompt must be exactly the locked template
            question = question if render(cfg.locked_template, question) == context else None
        else:  # no question field: recover it from the prompt (the text between the template's prefix and suffix)
            question = recover_question(cfg.locked_template, context)
        if question is None:
            raise ConfigError(
                f"logit_transfer (prompt-induced): the prompt of document {request.doc_id} of task "
                f"{request.task_name} is not locked_template filled with its question (a chat template, system "
                "instruction, few-shot examples or another prompt format?); the prompt-induced regime needs the "
                "bare locked prompt: drop those, pick the matching capability, or give two checkpoints"
            )
        return render(cfg.unlocked_template, question), render(cfg.locked_template, question)

    def _remember_prompts(self, requests) -> None:
        self._source_prompts = {r.args[0]: self._prompt_pair(r) for r in requests} if self.prompt_induced else {}

    def _encode(self, role: str, texts: list[str]) -> list[list[int]]:
        tok = self.source_tokenizers[role]
        special = {} if self.add_bos_token is None else {"add_special_tokens": self.add_bos_token}
        return [tok(text, **special)["input_ids"] for text in texts]

    def _left_padded(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, length - len(row) :] = 1
        return ids.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests, disable_tqdm: bool = False):
        self._remember_prompts(requests)
        return super().generate_until(requests, disable_tqdm=disable_tqdm)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        refuse_gen_kwargs(generation_kwargs, (*PROMPT_PASS_GEN_KWARGS, "num_beams"), "--model logit_transfer")
        mask = generation_kwargs.get("attention_mask")
        mask = torch.ones_like(context) if mask is None else mask
        if self.prompt_induced:
            pairs = [self._source_prompts[c] for c in self._batch_contexts]
            prompts = (
                *self._left_padded(self._encode("source", [p[0] for p in pairs])),
                *self._left_padded(self._encode("source_locked", [p[1] for p in pairs])),
            )
        else:
            prompts = (context, mask, context, mask)
        with mixed_logits(self.model, self._stepper(), prompts, self.transfer_config.lam):
            return super()._model_generate(context, max_length, stop, **generation_kwargs)

    # ------------------------------------------------------------------ scoring
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._remember_prompts(requests)
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        if self.prompt_induced:
            raise ConfigError(
                "loglikelihood_rolling has no prompt to fill the templates with: prompt-induced logit_transfer "
                "scores generate_until and loglikelihood tasks; give two checkpoints (model-induced) for this task"
            )
        return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

    def _row_entry(self, request, cut: int):
        """Prompt-induced: the request's two source prompts (tokens) and its continuation tokens."""
        if not self.prompt_induced:
            return None
        (context, _), _, continuation_enc = request
        # lm-eval moves the context's trailing whitespace into the continuation (_encode_pair); the source prompts
        # drop the same whitespace, so all three read it once, as continuation tokens
        moved = context[len(context.rstrip()) :]
        unlocked, locked = (p[: len(p) - len(moved)] if moved and p.endswith(moved) else p
                            for p in self._source_prompts[context])  # fmt: skip
        return self._encode("source", [unlocked])[0], self._encode("source_locked", [locked])[0], continuation_enc

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        logits = super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        lam, stepper, rows = self.transfer_config.lam, self._stepper(), inps.tolist()
        with torch.no_grad():
            if not self.prompt_induced:  # the sources read exactly the target's tokens
                deltas = stepper.sequence_delta(rows, rows, [len(r) for r in rows], self.device)
                logits[..., : self.vocab] += lam * torch.stack(deltas).to(logits.dtype)
                return logits
            found = [self._row_record(row) for row in rows]  # (unlocked, locked, continuation, unpadded length)
            deltas = stepper.sequence_delta(
                [src + cont[:-1] for src, _, cont, _ in found],
                [lck + cont[:-1] for _, lck, cont, _ in found],
                [len(cont) for *_, cont, _ in found],
                self.device,
            )
        for i, (*_, cont, length) in enumerate(found):
            logits[i, length - len(cont) : length, : self.vocab] += lam * deltas[i].to(logits.dtype)
        return logits

    def _row_record(self, row: list[int]):
        entry, length = self._scored_row(row)
        if entry is None:
            raise RuntimeError("logit_transfer: a scoring row matches no request (please report this)")
        return (*entry, length)
