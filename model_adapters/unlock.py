"""`lm_eval --model unlock`: HFLM on the target, steered by a MasterKey transferred from the source (cached on disk)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import torch
from lm_eval.api.model import CacheHook

from unlock_eval.data.prompts import extraction_mismatch, load_questions
from unlock_eval.layers import find_decoder_layers, hidden_size
from unlock_eval.methods.unlock.pack_steering import check_shape, check_target, load_packs, setup_from_packs
from unlock_eval.methods.unlock.spec import UnlockSpec
from unlock_eval.methods.unlock.steering import SteeringSetup
from unlock_eval.model_adapters.arguments import parse_unlock_model_args, resolve_role
from unlock_eval.model_adapters.base import PROMPT_PASS_GEN_KWARGS, RecordedRun, TransferLM, refuse_gen_kwargs
from unlock_eval.model_adapters.shared_alphas import SharedPass
from unlock_eval.models import concrete_dtype

# under lm-eval's logger tree, so `lm_eval --verbosity` and its handlers apply to our lines too
logger = logging.getLogger("lm_eval.models.unlock")


class SteeredRun(RecordedRun):
    """What an Unlock run does whatever its engine: its steering set-up (key, layers, fingerprint, record), a sweep's
    next alpha on the loaded model (`reconfigure`) and the note on tasks from another data set than the key's."""

    MODEL, SPEC = "unlock", UnlockSpec
    rank: int

    def reconfigure(self, alpha: float, share_alphas: list[float] | None = None) -> None:
        """Steer the loaded model with another alpha, as a sweep's next point (typed values, checked by its grid):
        model, key and map stay; the fingerprint, the --use_cache table and the results record follow the new alpha
        (set-up 0 passes)."""
        t0 = time.perf_counter()
        self._use(self.steering.with_alpha(alpha, share_alphas), time.perf_counter() - t0)
        self.set_cache_hook(CacheHook(None))  # a new run sets its own; never write into the previous table
        self.run_record.details["model_reused"] = True

    def _use(self, steering: SteeringSetup, setup_seconds: float) -> None:
        self.steering: SteeringSetup = steering
        self.unlock_config: UnlockSpec = steering.spec
        self.cache_table = self._table(steering.fingerprint())
        self.run_record = steering.record(setup_seconds)

    def _generation_limits(self, requests: list) -> list:
        """The requests with this run's max_new_tokens and stop_strings applied, as copies (lm-eval's --use_cache keys
        the originals; the table is this configuration's own, see SteeringSetup.fingerprint)."""
        cfg = self.unlock_config
        if cfg.max_new_tokens is None and cfg.stop_strings == "task":
            return requests
        limited = []
        for request in requests:
            context, gen_kwargs = request.args
            kwargs = dict(gen_kwargs)
            if cfg.max_new_tokens is not None:
                kwargs["max_gen_toks"] = cfg.max_new_tokens
            if cfg.stop_strings == "none":
                kwargs["until"] = []  # lm-eval still stops at the tokenizer's end of text
            limited.append(dataclasses.replace(request, arguments=(context, kwargs)))
        return limited

    def _note_task_families(self, requests) -> None:
        """Say once per new set of tasks when they come from another data set than the extraction prompts."""
        seen = getattr(self, "_tasks_seen", set())
        tasks = {r.task_name for r in requests if r.task_name} - seen
        self._tasks_seen = seen | tasks
        note = extraction_mismatch(self.unlock_config.extract_from, tasks) if tasks else None
        if note and self.rank == 0:
            logger.warning(note)


class UnlockLM(SteeredRun, TransferLM):
    """The target model, evaluated by lm-eval's HFLM, with the Unlock steering hooks around every forward.

    At construction the MasterKey is extracted from the source and mapped into the target (or loaded from the
    artifact cache: a warm start runs no extraction pass and does not even load the source). Loglikelihood
    requests are steered at the last context token (prefill_last), generation at the last prompt token.
    """

    def __new__(cls, **kwargs: Any):
        """`backend=vllm` builds the vLLM engine's model instead (model_adapters.unlock_vllm), however lm-eval or a
        sweep constructs `unlock`."""
        if str(kwargs.get("backend", "hf")).strip() == "vllm":
            from unlock_eval.model_adapters.unlock_vllm import UnlockVLLM

            return UnlockVLLM(**kwargs)
        return super().__new__(cls)

    def _parse(self, kwargs: dict[str, Any]):
        return parse_unlock_model_args(kwargs)

    def __init__(self, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        spec, hf_kwargs = self._parse(kwargs)
        target = resolve_role("target", spec.target, hf_kwargs.get("revision"), spec.cache_dir)
        uses = load_packs(spec) if spec.key is not None else None  # capability packs: no source, no extraction data
        if uses is not None:
            check_target(uses, spec, target.identity)  # before the target loads
        else:
            questions = load_questions(spec.extract_from, spec.n)  # data errors before any model is loaded
        self._start(target.pretrained, hf_kwargs)
        self.tokenizer.padding_side = "left"
        if uses is not None:
            check_shape(uses, spec, len(find_decoder_layers(self.model, spec.layers_path)), hidden_size(self.model))
            steering = setup_from_packs(spec, uses, target.identity, concrete_dtype(hf_kwargs["dtype"], target))
        else:
            steering = SteeringSetup.build(
                spec,
                questions,
                self.model,
                self.tokenizer,
                dtype=hf_kwargs["dtype"],  # canonical name, set by parse_model_args
                device="auto" if hf_kwargs.get("parallelize") else str(self.device),
                progress=self.rank == 0,
                target_revision=hf_kwargs.get("revision"),
            )
        self._use(steering, time.perf_counter() - t0)
        logger.info(
            "unlock: process %d (rank %d of %d) ready in %.1f s: %d extraction forward passes, models "
            "loaded for extraction: %s",
            os.getpid(),
            self.rank,
            self.world_size,
            self.run_record.setup_seconds,
            steering.extraction_forward_passes,
            ", ".join(steering.artifacts.models_loaded) or "none",
        )

    # ------------------------------------------------------------------ steered model calls
    def _row_entry(self, request, cut: int) -> int:
        """Where the request's context ends in its scoring row: prefill_last steers that position."""
        return max(len(request[1]) - 1 - cut, 0)

    def _positions_for(self, inps: torch.Tensor) -> torch.Tensor | None:
        if not getattr(self, "_score_rows", None) or self.unlock_config.mode != "prefill_last":
            return None
        ends = [self._scored_row(row)[0] for row in inps.tolist()]
        return torch.tensor([inps.shape[1] - 1 if end is None else end for end in ends], dtype=torch.long)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._note_task_families(requests)
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        with self.steering.steer(self.model, self._positions_for(inps)):
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)

    def generate_until(self, requests, disable_tqdm: bool = False):
        self._note_task_families(requests)
        requests = self._generation_limits(requests)
        cfg = self.unlock_config
        self._shared = SharedPass.start(requests, cfg.alpha, cfg.share_alphas, self.cache_file)
        try:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        finally:
            shared, self._shared = self._shared, None
            if shared is not None:
                shared.write({alpha: self._table(self.steering.fingerprint(alpha)) for alpha in shared.others})

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        if self.unlock_config.mode == "prefill_last":
            refuse_gen_kwargs(generation_kwargs, PROMPT_PASS_GEN_KWARGS, "mode=prefill_last")
        shared = getattr(self, "_shared", None)
        if shared is None:
            with self.steering.steer(self.model):
                return super()._model_generate(context, max_length, stop, **generation_kwargs)
        rows, mask, row_alphas = shared.expand(context, generation_kwargs.pop("attention_mask"))
        with self.steering.steer(self.model, alpha=row_alphas):
            out = super()._model_generate(rows, max_length, stop, attention_mask=mask, **generation_kwargs)
        return shared.collect(self, out, context.shape, stop)
