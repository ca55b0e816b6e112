"""`lm_eval --model unlock --model_args backend=vllm,...`: lm-eval's `vllm` model on the target, steered inside vLLM's
workers (unlock_eval.methods.unlock.vllm_steering) with the key of the HF backend, one alpha per request."""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

import torch

from unlock_eval.data.prompts import load_questions
from unlock_eval.layers import layer_indices
from unlock_eval.methods.unlock.pack_steering import check_shape, check_target, load_packs, setup_from_packs
from unlock_eval.methods.unlock.steering import SteeringSetup
from unlock_eval.methods.unlock.vllm_steering import ALPHA, POSITION
from unlock_eval.model_adapters.arguments import parse_unlock_model_args, resolve_role
from unlock_eval.model_adapters.shared_alphas import SharedPass
from unlock_eval.model_adapters.unlock import SteeredRun
from unlock_eval.model_adapters.vllm_engine import (
    VLLM,
    check_engine_kwargs,
    engine_record,
    install_steering,
    shutdown,
    text_config_of,
)
from unlock_eval.models import concrete_dtype

logger = logging.getLogger("lm_eval.models.unlock")


class UnlockVLLM(SteeredRun, VLLM):
    """The target in vLLM, steered per request: generation at the last prompt token (prefill_last) or at every
    position (additive_all), loglikelihood at the context's last token, as the HF backend. Extraction, alignment,
    the cache, the fingerprint and the record are the HF backend's; only the evaluation passes run in vLLM. Several
    alphas (share_alphas) go into one engine pass as requests of their own."""

    def __init__(self, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        spec, engine_kwargs = parse_unlock_model_args(kwargs)
        check_engine_kwargs(engine_kwargs)
        uses = load_packs(spec) if spec.key is not None else None
        questions = load_questions(spec.extract_from, spec.n) if uses is None else []  # data errors before loading
        target = resolve_role("target", spec.target, engine_kwargs.get("revision"), spec.cache_dir)
        # `auto` is the checkpoint's dtype, as on HF (vLLM's own `auto` would run a float32 checkpoint in float16)
        engine_kwargs["dtype"] = concrete_dtype(engine_kwargs["dtype"], target)
        config = text_config_of(target.pretrained)
        if isinstance(spec.layers, list):
            layer_indices(spec.layers, config.num_hidden_layers, "the target")
        if uses is not None:  # capability packs: no source, no extraction data
            check_target(uses, spec, target.identity)
            check_shape(uses, spec, config.num_hidden_layers, config.hidden_size)
            steering = setup_from_packs(spec, uses, target.identity, engine_kwargs["dtype"])
        else:
            steering = SteeringSetup.build(
                spec,
                questions,
                dtype=engine_kwargs["dtype"],
                device="cuda" if torch.cuda.is_available() else "cpu",
                progress=True,
                target_revision=engine_kwargs.get("revision"),
            )
        gc.collect()  # the extraction's models go before vLLM sizes its KV cache
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        VLLM.__init__(self, pretrained=target.pretrained, **engine_kwargs)
        try:
            self.steered_layers = install_steering(self.model, steering, spec.layers_path)
            self._use(steering, time.perf_counter() - t0)
        except BaseException:
            shutdown(self.model)  # no engine process outlives a failed start
            raise
        logger.info(
            "unlock (vLLM): process %d ready in %.1f s: %d extraction forward passes, %d layers hooked on every worker",
            os.getpid(),
            self.run_record.setup_seconds,
            steering.extraction_forward_passes,
            len(self.steered_layers),
        )

    def _use(self, steering: SteeringSetup, setup_seconds: float) -> None:
        super()._use(steering, setup_seconds)
        self.run_record.details["engine"] = engine_record(self.model_args, self.steered_layers)

    def _table(self, configuration: str) -> str:
        """Its own `--use_cache` table: vLLM's answers are not the HF backend's to the last bit."""
        return f"{self.MODEL}_vllm_{configuration}"

    # ------------------------------------------------------------------ requests
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._note_task_families(requests)
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False):
        # each scoring row (as lm-eval's vllm model cuts it) -> the position of its context's last token
        longest = self.max_length - 1
        self._context_ends = {}
        for _, context, continuation in requests:
            cut = max(0, len(context) + len(continuation) - longest)
            self._context_ends[tuple((context + continuation)[-longest:])] = max(len(context) - cut - 1, 0)
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm)
        finally:
            self._context_ends = {}

    def generate_until(self, requests, disable_tqdm: bool = False):
        self._note_task_families(requests)
        requests = self._generation_limits(requests)
        cfg = self.unlock_config
        self._shared = SharedPass.start(requests, cfg.alpha, cfg.share_alphas, self.cache_file)
        self._prompts = self._prompt_index(requests) if self._shared is not None else {}
        try:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        finally:
            shared, self._shared, self._prompts = self._shared, None, {}
            if shared is not None:
                shared.write({alpha: self._table(self.steering.fingerprint(alpha)) for alpha in shared.others})

    def _prompt_index(self, requests) -> dict[tuple[int, ...], tuple[str, list[str]]]:
        """Each prompt's tokens as lm-eval's vllm model sends them -> (its text, its stop strings)."""
        from lm_eval.models.utils import maybe_truncate

        eos = self.tokenizer.decode(self.eot_token_id) or getattr(self.tokenizer, "eos_token", None)
        index = {}
        for request in requests:
            context, gen_kwargs = request.args
            _, until, max_gen_toks = self.modify_gen_kwargs(gen_kwargs, eos=eos, default_max_gen_toks=self.max_gen_toks)
            tokens, _ = maybe_truncate(self.tok_encode(context), max_gen_toks, self.max_length,
                                       side=self.truncation_side, verbose=False)  # fmt: skip
            index[tuple(tokens)] = (context, until)
        return index

    def _model_generate(self, requests, generate: bool = False, sampling_params=None):
        from vllm import SamplingParams

        alpha = self.unlock_config.alpha
        if not generate:  # scoring rows: steered at their context's last token
            ends = getattr(self, "_context_ends", {})
            params = [
                _steered(
                    SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False),
                    alpha,
                    ends.get(tuple(row)),
                )  # fmt: skip
                for row in requests
            ]
            return self._generate(requests, params, [alpha] * len(requests))
        if not isinstance(sampling_params, list):
            sampling_params = [sampling_params] * len(requests)
        shared = getattr(self, "_shared", None)
        alphas = [alpha] if shared is None else [alpha, *shared.others]
        outputs = self._generate(
            list(requests) * len(alphas),
            [_steered(params, a) for a in alphas for params in sampling_params],
            [a for a in alphas for _ in requests],
        )
        n = len(requests)
        for copy, other in enumerate(alphas[1:], 1):
            self._collect(shared, other, requests, outputs[copy * n : (copy + 1) * n])
        return outputs[:n]

    def _collect(self, shared: SharedPass, alpha: float, rows, outputs) -> None:
        """Keep another alpha's answers, finished as lm-eval's vllm model finishes its own."""
        from lm_eval.models.utils import postprocess_generated_text

        for row, output in zip(rows, outputs):
            context, until = self._prompts.get(tuple(row), (None, None))
            gen_kwargs = shared.gen_kwargs.get(context) if context is not None else None
            if gen_kwargs is not None:
                answer = postprocess_generated_text(output.outputs[0].text, until, self.think_end_token)
                shared.answers[alpha].append(((context, gen_kwargs), answer))

    def _generate(self, rows, params, alphas):
        """One engine pass. additive_all steers prompt positions too, so its requests keep their prefix-cache blocks to
        their own alpha (cache_salt); prefill_last leaves every block before the last prompt token unsteered."""
        from vllm import TokensPrompt

        salted = self.unlock_config.mode == "additive_all"
        prompts = [
            TokensPrompt(prompt_token_ids=row, cache_salt=self.steering.fingerprint(a))
            if salted and a
            else TokensPrompt(prompt_token_ids=row)
            for row, a in zip(rows, alphas)
        ]
        return self.model.generate(
            prompts, sampling_params=params, use_tqdm=self.batch_size == "auto", lora_request=self.lora_request
        )


def _steered(params, alpha: float, position: int | None = None):
    """A copy of `params` (vllm.SamplingParams) that asks the workers to steer its request at `alpha` (and, for
    prefill_last, at `position` instead of the last prompt token)."""
    steered = params.clone()
    steered.extra_args = {**(params.extra_args or {}), ALPHA: float(alpha)}
    if position is not None:
        steered.extra_args[POSITION] = int(position)
    return steered
