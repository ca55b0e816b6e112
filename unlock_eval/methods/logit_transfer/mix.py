"""Logit-difference transfer (proxy-tuning): the target's logits plus lam·(source − source_locked) at every step.

The two source variants run beside the target with KV caches of their own: a prefill on their own prompts, then
one step per generated token on the token the target chose. When they are one checkpoint (the prompt-induced
regime) both go through one batched forward. `mixed_logits` installs this on the target's forward, so the target's
own `generate` (greedy or sampled, with every logits processor) sees the mixed logits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from unlock_eval.errors import ConfigError


def logit_rows(model: nn.Module) -> int:
    """How many logits the model emits per position (its output embedding's rows)."""
    return model.get_output_embeddings().weight.shape[0]


def check_vocabularies(tokenizers: dict, labels: dict[str, str]) -> None:
    """Refuse (one line) unless the target's vocabulary is each source's (identical) or a prefix of it (the
    sources' extra ids are then dropped): logit arithmetic adds scores of the same token ids."""
    target = tokenizers["target"]
    ids = list(range(len(target)))
    wanted = target.convert_ids_to_tokens(ids)
    for role in ("source", "source_locked"):
        other = tokenizers[role]
        if other is target:
            continue
        if len(other) < len(target):
            raise ConfigError(_vocab_error(labels, role, f"the target has {len(target)} tokens, {role} {len(other)}"))
        got = other.convert_ids_to_tokens(ids)
        first = next((i for i, (a, b) in enumerate(zip(wanted, got)) if a != b), None)
        if first is not None:
            why = f"token id {first} is {wanted[first]!r} in the target but {got[first]!r} in {role}"
            raise ConfigError(_vocab_error(labels, role, why))


def _vocab_error(labels: dict[str, str], role: str, why: str) -> str:
    return (
        f"logit_transfer: the vocabularies of target ({labels['target']}) and {role} ({labels[role]}) differ: "
        f"{why}; logit arithmetic needs a shared vocabulary (the target's equal to or a prefix of the source's); "
        "for models with different tokenizers use --model unlock"
    )


def _left_pad(ids: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    extra = length - ids.shape[1]
    if extra <= 0:
        return ids, mask
    return (
        torch.cat([ids.new_zeros(ids.shape[0], extra), ids], dim=1),
        torch.cat([mask.new_zeros(mask.shape[0], extra), mask], dim=1),
    )


class SourceStepper:
    """The source variants of one batch, each with its own KV cache. `busy` is set while they run, so a hook on a
    target that is also the source does not fire on the source's own forwards."""

    def __init__(self, source: nn.Module, source_locked: nn.Module, vocab: int):
        self.models = {"source": source, "source_locked": source_locked}
        self.batched = source is source_locked
        self.vocab = vocab
        self.busy = False
        self.forward_calls = 0

    def _forward(self, model, ids, mask, positions, cache):
        self.busy = True
        try:
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        finally:
            self.busy = False
        self.forward_calls += 1
        return out.logits[:, -1, : self.vocab].float(), out.past_key_values

    def _model(self, name: str) -> nn.Module:
        return self.models["source" if name == "both" else name]

    def prefill(self, source_ids, source_mask, locked_ids, locked_mask) -> torch.Tensor:
        """Run both variants on their own left-padded prompts; the difference of their next-token logits [B, V]."""
        self.rows = source_ids.shape[0]
        if self.batched:
            length = max(source_ids.shape[1], locked_ids.shape[1])
            a, am = _left_pad(source_ids, source_mask, length)
            b, bm = _left_pad(locked_ids, locked_mask, length)
            parts = {"both": (torch.cat([a, b]), torch.cat([am, bm]))}
        else:
            parts = {"source": (source_ids, source_mask), "source_locked": (locked_ids, locked_mask)}
        self.state, last = {}, {}
        for name, (ids, mask) in parts.items():
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding: each row counts from 0
            last[name], cache = self._forward(self._model(name), ids, mask, positions, None)
            self.state[name] = (mask, positions[:, -1:], cache)
        return self._delta(last)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed the token the target chose ([B]) to both variants; the new logit difference [B, V]."""
        last = {}
        for name, (mask, position, cache) in self.state.items():
            ids = (torch.cat([tokens, tokens]) if name == "both" else tokens).unsqueeze(1)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            last[name], cache = self._forward(self._model(name), ids, mask, position + 1, cache)
            self.state[name] = (mask, position + 1, cache)
        return self._delta(last)

    def _delta(self, last: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.batched:
            return last["both"][: self.rows] - last["both"][self.rows :]
        return last["source"] - last["source_locked"]

    def sequence_delta(self, source_rows, locked_rows, tails: Sequence[int], device) -> list[torch.Tensor]:
        """Logit differences for scoring: for row i, the last tails[i] positions of source_rows[i] minus those of
        locked_rows[i] ([tails[i], V]); rows are right-padded, so every real position sees only its own prefix."""
        runs = (
            {"both": list(source_rows) + list(locked_rows)}
            if self.batched
            else {"source": list(source_rows), "source_locked": list(locked_rows)}
        )
        out = {}
        for name, rows in runs.items():
            length = max(len(r) for r in rows)
            ids = torch.zeros(len(rows), length, dtype=torch.long, device=device)
            mask = torch.zeros_like(ids)
            for i, row in enumerate(rows):
                ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[i, : len(row)] = 1
            self.busy = True
            try:
                logits = self._model(name)(input_ids=ids, attention_mask=mask).logits
            finally:
                self.busy = False
            self.forward_calls += 1
            out[name] = logits[..., : self.vocab].float()
        n = len(source_rows)
        a, b = (out["both"][:n], out["both"][n:]) if self.batched else (out["source"], out["source_locked"])
        la, lb = [len(r) for r in source_rows], [len(r) for r in locked_rows]
        return [a[i, la[i] - tails[i] : la[i]] - b[i, lb[i] - tails[i] : lb[i]] for i in range(n)]


@contextmanager
def mixed_logits(target: nn.Module, stepper: SourceStepper, prompts: tuple, lam: float) -> Iterator[None]:
    """While active, every forward of `target` returns logits[:, -1, :V] + lam·(source − source_locked): the first
    forward (the prompt) prefills the sources on `prompts` (their ids and masks), each later one steps them on the
    token it was given. One generation per context."""
    started = False

    def hook(module, args, kwargs, output):
        nonlocal started
        if stepper.busy:
            return output
        if started:
            ids = kwargs.get("input_ids", args[0] if args else None)
            delta = stepper.step(ids[:, -1])
        else:
            delta = stepper.prefill(*prompts)
            started = True
        output.logits[:, -1, : stepper.vocab] += lam * delta.to(output.logits.dtype)
        return output

    handle = target.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
