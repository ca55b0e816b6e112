"""`lm_eval --model unlock`: HFLM on the target, steered by a MasterKey transferred from the source (cached on disk)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from contextlib import contextmanager
from typing import Any

import torch
from lm_eval.api.model import CacheHook
from lm_eval.models.huggingface import HFLM

from unlock_eval import params
from unlock_eval.cache import fingerprint
from unlock_eval.data.prompts import extraction_mismatch, load_questions
from unlock_eval.errors import ConfigError
from unlock_eval.layers import find_decoder_layers
from unlock_eval.method import MethodRecord, peak_rss_mb
from unlock_eval.methods.spec import TransferModels
from unlock_eval.methods.unlock.diagnose import cached_diagnostics
from unlock_eval.methods.unlock.diagnostics import verdict
from unlock_eval.methods.unlock.extractor import Extractor, build_unlock
from unlock_eval.methods.unlock.spec import UnlockSpec
from unlock_eval.methods.unlock.steer import steer
from unlock_eval.model_adapters import shared_alphas
from unlock_eval.model_adapters.arguments import parse_model_args
from unlock_eval.model_adapters.base import RecordedRun, resolve_role

# under lm-eval's logger tree, so `lm_eval --verbosity` and its handlers apply to our lines too
logger = logging.getLogger("lm_eval.models.unlock")


class UnlockLM(RecordedRun, HFLM):
    """The target model, evaluated by lm-eval's HFLM, with the Unlock steering hooks around every forward.

    At construction the MasterKey is extracted from the source and mapped into the target (or loaded from the
    artifact cache: a warm start runs no extraction pass and does not even load the source). Loglikelihood
    requests are steered at the last context token (prefill_last), generation at the last prompt token.
    """

    def __init__(self, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        spec, hf_kwargs = parse_model_args(UnlockSpec, "unlock", kwargs)
        self.unlock_config: UnlockSpec = spec
        questions = load_questions(spec.extract_from, spec.n)  # data errors before any model is loaded
        target = resolve_role("target", spec.target, hf_kwargs.get("revision"), spec.cache_dir)
        hf_kwargs.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(pretrained=target.pretrained, **hf_kwargs)
        self.tokenizer.padding_side = "left"
        self._build_steering(spec, questions, hf_kwargs)
        self._startup_seconds = time.perf_counter() - t0
        self.cache_table = f"unlock_{self.steering_fingerprint}"
        self.run_record = self._record(spec, self._startup_seconds)
        logger.info(
            "unlock: process %d (rank %d of %d) ready in %.1f s: %d extraction forward passes, models "
            "loaded for extraction: %s",
            os.getpid(),
            self.rank,
            self.world_size,
            self._startup_seconds,
            self.extraction_forward_passes,
            ", ".join(self.artifacts.models_loaded) or "none",
        )

    def reconfigure(self, alpha: float, share_alphas: Any = None) -> None:
        """Steer the loaded model with another alpha, as a sweep's next point: model, key and map stay; the steering
        fingerprint, the --use_cache table and the results record follow the new alpha (set-up 0 passes)."""
        t0 = time.perf_counter()
        spec = dataclasses.replace(self.unlock_config, alpha=alpha, share_alphas=share_alphas)
        self.unlock_config = spec
        self.steering_fingerprint = self._fingerprint(spec.alpha)
        self.cache_table = f"unlock_{self.steering_fingerprint}"
        self.set_cache_hook(CacheHook(None))  # a new run sets its own; never write into the previous table
        self.extraction_forward_passes = self.subspace_decompositions = 0
        self.run_record = self._record(spec, time.perf_counter() - t0)
        self.run_record.details["model_reused"] = True

    # ------------------------------------------------------------------ extraction and alignment
    def _build_steering(self, spec: UnlockSpec, questions: list[str], hf_kwargs: dict[str, Any]) -> None:
        n_layers = len(find_decoder_layers(self.model, spec.layers_path))
        if isinstance(spec.layers, list) and any(not 0 <= layer < n_layers for layer in spec.layers):
            raise ConfigError(f"layers={spec.layers}: the target has {n_layers} layers (0..{n_layers - 1})")
        dtype = hf_kwargs["dtype"]  # canonical name, set by parse_model_args
        extractor = Extractor.for_spec(
            spec,
            dtype=dtype,
            device="auto" if hf_kwargs.get("parallelize") else str(self.device),
            progress=self.rank == 0,
            target_revision=hf_kwargs.get("revision"),
            preloaded={spec.target: (self.model, self.tokenizer)},
        )
        # one process builds (data-parallel ranks, or two runs started at once); the others wait, then load
        with extractor.cache.lock("build", fingerprint({"config": spec.as_dict(), "dtype": dtype})):
            art = build_unlock(extractor, spec, questions)
            self.diagnostics = self._diagnose(extractor, spec, questions, art.native)
        self.artifacts = art
        self.steer_layers = spec.layers
        if spec.layers == "aligned":
            if art.native:
                raise ConfigError("layers=aligned: the source is the target itself here (native steering), so no key "
                                  "was transferred; give layers=all or a list")  # fmt: skip
            self.steer_layers = [row.target_layer for row in self.diagnostics if row.aligned]
            if not self.steer_layers:
                raise ConfigError(
                    f"layers=aligned: no target layer passes ({verdict(self.diagnostics)}); steer all layers or a "
                    "list, or raise n or change k (`unlock-eval diagnose` shows the numbers)"
                )
        self.steering_key = art.target_key
        self.steering_fingerprint = self._fingerprint(spec.alpha)
        self.extraction_forward_passes = art.forward_passes
        self.subspace_decompositions = art.decompositions
        self.identities = {
            m: extractor.identity(m) for m in dict.fromkeys([spec.target, spec.source, spec.source_locked])
        }

    def _diagnose(self, extractor: Extractor, spec: UnlockSpec, questions: list[str], native: bool):
        """The diagnostics of a transferred key (cached): recorded in the results file, read by layers=aligned.
        The cosine with the target's own key is included when those states are cached or layers=aligned asks."""
        if spec.layers == "aligned" and len(questions) < 4:
            raise ConfigError(
                f"layers=aligned: the diagnostics need n >= 4 prompts (held-out folds), got n={len(questions)}"
            )
        if native or len(questions) < 4:
            return None
        own_key = spec.layers == "aligned" or (
            not spec.model_induced and extractor.has_states(spec.target, spec.unlocked_template, questions)
        )
        return cached_diagnostics(extractor, spec, questions, native=own_key)

    def _fingerprint(self, alpha: float) -> str:
        """What makes one steered configuration's answers: its --use_cache table is named after this."""
        cfg = self.unlock_config
        return fingerprint(
            {
                "alpha": alpha,
                "mode": cfg.mode,
                "layers": self.steer_layers,
                "layers_path": cfg.layers_path,
                "key": self.artifacts.hashes["target_key_checksum"],
            }
        )

    @contextmanager
    def _steer(self, positions: torch.Tensor | None = None, alpha: float | torch.Tensor | None = None):
        cfg = self.unlock_config
        with steer(
            self.model,
            self.steering_key,
            alpha=cfg.alpha if alpha is None else alpha,
            mode=cfg.mode,
            layers=self.steer_layers,
            layers_path=cfg.layers_path,
        ) as handle:
            handle.positions = positions
            yield handle

    # ------------------------------------------------------------------ steered model calls
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        # Remember where each request's context ends, so _model_call can steer that position (prefill_last).
        self._context_ends: dict[tuple[int, ...], int] = {}
        for _, context_enc, continuation_enc in requests:
            full = (context_enc + continuation_enc)[-(self.max_length + 1) :]
            inp = tuple(full[:-1])
            cut = len(context_enc) + len(continuation_enc) - len(full)
            self._context_ends[inp] = max(len(context_enc) - 1 - cut, 0)
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        finally:
            self._context_ends = {}

    def _positions_for(self, inps: torch.Tensor) -> torch.Tensor | None:
        ends = getattr(self, "_context_ends", None)
        if not ends or self.unlock_config.mode != "prefill_last":
            return None
        positions = []
        for row in inps.tolist():
            # HFLM right-pads with zeros: only the trailing zeros can be padding, so try those cut points only
            length, match = len(row), None
            while length > 0:
                match = ends.get(tuple(row[:length]))
                if match is not None or row[length - 1] != 0:
                    break
                length -= 1
            positions.append(len(row) - 1 if match is None else match)
        return torch.tensor(positions, dtype=torch.long)

    def _note_task_families(self, requests) -> None:
        """Say once per new set of tasks when they come from another data set than the extraction prompts."""
        seen = getattr(self, "_tasks_seen", set())
        tasks = {r.task_name for r in requests if r.task_name} - seen
        self._tasks_seen = seen | tasks
        note = extraction_mismatch(self.unlock_config.extract_from, tasks) if tasks else None
        if note and self.rank == 0:
            logger.warning(note)

    def generate_until(self, requests, disable_tqdm: bool = False):
        self._note_task_families(requests)
        self._shared = self._shared_pass(requests)
        try:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        finally:
            shared, self._shared = self._shared, None
            if shared is not None:
                tables = {alpha: f"unlock_{self._fingerprint(alpha)}" for alpha in shared["others"]}
                written = shared_alphas.write_answers(self.cache_file, tables, shared["answers"])
                logger.info("unlock: shared pass wrote %d answers for alpha %s into %s", written,
                            ", ".join(f"{a:g}" for a in shared["others"]), self.cache_file)  # fmt: skip

    def _shared_pass(self, requests) -> dict | None:
        """The other alphas of `share_alphas` this generation also runs for, or None (not asked, or sampling, whose
        answers lm-eval never serves from its cache)."""
        others = [a for a in self.unlock_config.share_alphas or () if a != self.unlock_config.alpha]
        if not others or not requests:
            return None
        shared_alphas.check_cache(self.cache_file)
        if any(request.args[1].get("do_sample") for request in requests):
            logger.warning("unlock: share_alphas ignored for sampled generation (lm-eval does not cache it)")
            return None
        by_context = shared_alphas.gen_kwargs_by_context(requests)
        return {"others": others, "gen_kwargs": by_context, "answers": {alpha: [] for alpha in others}}

    def tok_batch_encode(self, strings, *args, **kwargs):
        self._batch_contexts = list(strings)  # the prompts of the batch _model_generate is about to get
        return super().tok_batch_encode(strings, *args, **kwargs)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._note_task_families(requests)
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        with self._steer(self._positions_for(inps)):
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        if self.unlock_config.mode == "prefill_last":
            # these split or repeat the prompt pass, so "the prefill call" would no longer be the prompt's end
            bad = [
                k
                for k in ("prefill_chunk_size", "prompt_lookup_num_tokens", "assistant_model")
                if generation_kwargs.get(k)
            ]
            if bad:
                raise ConfigError(f"gen_kwargs {', '.join(bad)}: not supported with mode=prefill_last")
        shared = getattr(self, "_shared", None)
        if shared is None:
            with self._steer():
                return super()._model_generate(context, max_length, stop, **generation_kwargs)
        alphas = [self.unlock_config.alpha, *shared["others"]]
        batch = context.shape[0]
        rows, mask, row_alphas = shared_alphas.expand(context, generation_kwargs.pop("attention_mask"), alphas)
        with self._steer(alpha=row_alphas):
            out = super()._model_generate(rows, max_length, stop, attention_mask=mask, **generation_kwargs)
        for copy, alpha in enumerate(shared["others"], 1):
            for tokens, prompt in zip(out[copy * batch : (copy + 1) * batch].tolist(), self._batch_contexts):
                gen_kwargs = shared["gen_kwargs"].get(prompt)
                if gen_kwargs is not None:
                    answer = shared_alphas.finish_answer(self, tokens, context.shape[1], stop)
                    shared["answers"][alpha].append(((prompt, gen_kwargs), answer))
        return out[:batch]

    # ------------------------------------------------------------------ what the results file records
    def _record(self, spec: UnlockSpec, setup_seconds: float) -> MethodRecord:
        art = self.artifacts
        roles = {"target": spec.target, "source": spec.source, "source_locked": spec.source_locked}
        models = set(params.names(TransferModels))
        return MethodRecord(
            method="native_steering" if art.native else "unlock",
            models={role: {"spec": m, "identity": self.identities[m]} for role, m in roles.items()},
            hyperparameters={
                **{k: v for k, v in spec.as_dict().items() if k not in models},
                "layers": "all" if spec.layers is None else spec.layers,
            },
            setup_seconds=round(setup_seconds, 3),
            setup_peak_rss_mb=peak_rss_mb(),
            extra_forward_passes_per_token=0,  # hooks add one vector per steered layer, no forward pass
            details={
                "source_revision": spec.source_revision,
                "layer_map_resolved": art.subspace_map.layer_map if art.subspace_map is not None else None,
                "steering_fingerprint": self.steering_fingerprint,
                "artifacts": art.hashes,
                "extraction_forward_passes": self.extraction_forward_passes,
                "subspace_decompositions": self.subspace_decompositions,  # per layer; 0 when cached bases covered k
                "layers_resolved": "all" if self.steer_layers is None else self.steer_layers,
                "diagnostics": None
                if self.diagnostics is None
                else {"verdict": verdict(self.diagnostics), "layers": [row.as_dict() for row in self.diagnostics]},
                "models_loaded_for_extraction": list(art.models_loaded),
            },
        )
