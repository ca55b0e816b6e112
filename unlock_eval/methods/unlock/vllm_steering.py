"""Steering inside vLLM's workers: a worker extension that hooks the decoder layers on every worker (tensor-parallel
ranks, data-parallel replicas) and steers each request with its own alpha, read from its SamplingParams.

vLLM loads it by name (`LLM(worker_extension_cls=WORKER_EXTENSION)`) and calls its methods through
`LLM.collective_rpc`, so nothing of vLLM is forked or copied. A request is steered when its
`SamplingParams.extra_args` carry `ALPHA` (its alpha); under prefill_last it is steered at position `POSITION`
(default: its last prompt token), once, in the engine step that computes that position, whatever the chunking
of its prefill or the prefix-cache hit; under additive_all at every position it computes. The residual stream is
what a vLLM decoder layer returns split in two, (hidden states, residual): the hooks steer their sum, the stream
the HF backend steers, and hand it on as (steered stream, 0) so the next layer's fused add-norm reads it exactly.

The batch layout (request ids, token offsets, computed tokens) is read from vLLM's V1 model runner
(`VLLM_USE_V2_MODEL_RUNNER=0`, set by the adapter).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from unlock_eval.layers import find_decoder_layers
from unlock_eval.methods.unlock.steer import MODES, steer_rows

WORKER_EXTENSION = "unlock_eval.methods.unlock.vllm_steering.SteeringWorkerExtension"
ALPHA = "unlock_alpha"  # SamplingParams.extra_args key: this request's alpha (absent or 0: not steered)
POSITION = "unlock_position"  # ... the position prefill_last steers (default: the last prompt token)


@dataclass
class StepPlan:
    """What one engine step steers: additive_all, an alpha per token row ([T, 1]); prefill_last, the token rows
    and their alphas ([m, 1]). `requests` names the request of each prefill_last row; `count` is how many token rows
    each hooked layer steers."""

    token_alphas: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    row_alphas: torch.Tensor | None = None
    requests: list[str] = field(default_factory=list)
    count: int = 0

    def to(self, device: torch.device) -> StepPlan:
        """The plan on `device` (moved once per step, not once per hooked layer)."""

        def move(t):
            return None if t is None else t.to(device)

        return StepPlan(move(self.token_alphas), move(self.rows), move(self.row_alphas), self.requests, self.count)


def plan_step(runner, mode: str, num_tokens: int) -> StepPlan:
    """The plan of the step the V1 model runner is about to run (its persistent batch, offsets and requests)."""
    batch = runner.input_batch
    n = batch.num_reqs
    starts = runner.query_start_loc.np[: n + 1]
    computed = batch.num_computed_tokens_cpu[:n]
    alphas = torch.zeros(num_tokens, 1) if mode == "additive_all" else None
    rows, row_alphas, requests = [], [], []
    for i, req_id in enumerate(batch.req_ids[:n]):
        state = runner.requests[req_id]
        extra = (state.sampling_params.extra_args or {}) if state.sampling_params is not None else {}
        alpha = float(extra.get(ALPHA, 0.0) or 0.0)
        if alpha == 0.0:
            continue
        start, end = int(starts[i]), int(starts[i + 1])
        if alphas is not None:
            alphas[start:end] = alpha
            continue
        position = int(extra.get(POSITION, len(state.prompt_token_ids) - 1))
        row = start + position - int(computed[i])  # this step computes positions computed[i] .. computed[i]+end-start
        if start <= row < end:
            rows.append(row)
            row_alphas.append(alpha)
            requests.append(req_id)
    if alphas is not None:
        count = int((alphas != 0).sum())
        return StepPlan(token_alphas=alphas, count=count) if count else StepPlan()
    if not rows:
        return StepPlan()
    return StepPlan(rows=torch.tensor(rows), row_alphas=torch.tensor(row_alphas)[:, None], requests=requests,
                    count=len(rows))  # fmt: skip


class LayerSteering:
    """The hooks of one worker: a pre-hook on the model plans each step, a hook on each steered layer applies it."""

    def __init__(
        self,
        runner,
        directions: dict[int, torch.Tensor],
        mode: str,
        layers_path: str | None,
        arithmetic: str = "float32",
        factors: dict[int, float] | None = None,
    ):
        self.runner, self.mode, self.arithmetic = runner, mode, arithmetic
        self.plan = StepPlan()
        self.steered = Counter()  # request id -> layer calls that steered its prefill_last position
        self.steered_rows = 0  # token rows steered, summed over layers and steps
        model = runner.get_model()
        decoder_layers = find_decoder_layers(model, layers_path)
        self.hooks = [model.register_forward_pre_hook(self._plan, with_kwargs=True)]
        for layer, direction in directions.items():
            factor = (factors or {}).get(layer)
            self.hooks.append(decoder_layers[layer].register_forward_hook(self._steer_with(direction, factor)))

    def _plan(self, _module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        tokens = ids if ids is not None else kwargs.get("inputs_embeds")
        self.plan = plan_step(self.runner, self.mode, tokens.shape[0]).to(tokens.device)

    def _steer_with(self, direction: torch.Tensor, factor: float | None = None):
        cache: dict[torch.device, torch.Tensor] = {}

        def hook(_module, _args, output):
            plan = self.plan
            if plan.token_alphas is None and plan.rows is None:
                return None
            hidden, residual = output if isinstance(output, tuple) else (output, None)
            stream = hidden if residual is None else hidden + residual
            r = cache.get(stream.device)
            if r is None:
                r = cache[stream.device] = direction.to(stream.device)
            steered = stream.clone()
            if plan.token_alphas is not None:
                a = plan.token_alphas if factor is None else plan.token_alphas * factor
                steered[: a.shape[0]] = steer_rows(stream[: a.shape[0]], r, a, False, self.arithmetic)
            else:
                a = plan.row_alphas if factor is None else plan.row_alphas * factor
                steered[plan.rows] = steer_rows(stream[plan.rows], r, a, True, self.arithmetic)
                self.steered.update(plan.requests)
            self.steered_rows += plan.count
            if residual is None:
                return steered
            return steered, torch.zeros_like(residual)

        return hook

    def remove(self) -> None:
        for handle in self.hooks:
            handle.remove()
        self.hooks = []


class SteeringWorkerExtension:
    """Mixed into vLLM's worker class (`worker_extension_cls`); each method runs on every worker via collective_rpc."""

    def unlock_install_steering(
        self,
        directions: dict[int, list[float]],
        mode: str,
        layers_path: str | None = None,
        num_layers: int | None = None,
        hidden_size: int | None = None,
        arithmetic: str = "float32",
        factors: dict[int, float] | None = None,
    ) -> int:
        """Hook the layers in `directions` (layer -> direction, see steer.unit_directions) of a model of `num_layers`
        decoder layers and `hidden_size` (checked when given), steering with `arithmetic` (steer.steer_rows) at each
        request's alpha times `factors[layer]` (when given: alpha per layer); returns how many layers this worker
        hooks."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: allowed values are {', '.join(MODES)}")
        runner = self.model_runner
        found = len(find_decoder_layers(runner.get_model(), layers_path))
        sizes = {len(vector) for vector in directions.values()}
        if (num_layers is not None and found != num_layers) or (hidden_size is not None and sizes - {hidden_size}):
            raise ValueError(
                f"the key is for {num_layers} layers of size {hidden_size}; this vLLM model has {found} decoder "
                f"layers and the directions have sizes {sorted(sizes)}"
            )
        if not hasattr(runner, "input_batch") or not hasattr(runner, "requests"):
            raise RuntimeError(
                f"unlock steering reads vLLM's V1 model runner; this worker runs {type(runner).__name__} "
                "(set VLLM_USE_V2_MODEL_RUNNER=0)"
            )
        self.unlock_remove_steering()
        dtype = torch.float32
        vectors = {int(layer): torch.tensor(vector, dtype=dtype) for layer, vector in directions.items()}
        factors = {int(layer): float(f) for layer, f in (factors or {}).items()}
        self._unlock_steering = LayerSteering(runner, vectors, mode, layers_path, arithmetic, factors)
        return len(vectors)

    def unlock_remove_steering(self) -> None:
        steering = getattr(self, "_unlock_steering", None)
        if steering is not None:
            steering.remove()
        self._unlock_steering = None

    def unlock_steering_counts(self, reset: bool = False) -> dict:
        """What this worker steered: token rows over layers and steps, and prefill_last layer calls per request."""
        steering = getattr(self, "_unlock_steering", None)
        if steering is None:
            return {"installed": False, "rows": 0, "requests": {}}
        counts = {"installed": True, "rows": steering.steered_rows, "requests": dict(steering.steered)}
        if reset:
            steering.steered.clear()
            steering.steered_rows = 0
        return counts
