"""What our lm-eval models share: record and cache table (RecordedRun), and on top of HFLM (TransferLM) set-up, rows,
refusals."""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from lm_eval.models.huggingface import HFLM

from unlock_eval.errors import ConfigError
from unlock_eval.method import RECORD_KEY, MethodRecord
from unlock_eval.model_adapters.arguments import parse_model_args

V = TypeVar("V")
# generation arguments that split or repeat the prompt pass: "the prefill call" would no longer be the prompt's end
PROMPT_PASS_GEN_KWARGS = ("prefill_chunk_size", "prompt_lookup_num_tokens", "assistant_model")


def match_padded_row(table: dict[tuple[int, ...], V], row: list[int]) -> tuple[V | None, int]:
    """The entry of a right-padded scoring row and the row's unpadded length; (None, len(row)) when none matches.
    HFLM pads with zeros: only trailing zeros can be padding, so only those cut points are tried."""
    length = len(row)
    while length > 0:
        entry = table.get(tuple(row[:length]))
        if entry is not None:
            return entry, length
        if row[length - 1] != 0:
            break
        length -= 1
    return None, len(row)


def refuse_gen_kwargs(generation_kwargs: dict[str, Any], names: tuple[str, ...], where: str) -> None:
    """One line naming the generation arguments (of `names`, or num_beams > 1 when named) not supported `where`."""
    bad = [k for k in names if k != "num_beams" and generation_kwargs.get(k)]
    if "num_beams" in names and int(generation_kwargs.get("num_beams", 1) or 1) > 1:
        bad.append("num_beams")
    if bad:
        raise ConfigError(f"gen_kwargs {', '.join(bad)}: not supported with {where}")


class RecordedRun:
    """What every model of ours does whatever its engine: its method record in the results (`run_record`, read from
    `get_model_info`) and its own `--use_cache` table per configuration (`cache_table`, named by `_table`)."""

    MODEL: str
    run_record: MethodRecord
    cache_table: str
    cache_file: str | None = None

    def _table(self, configuration: str) -> str:
        """The `--use_cache` table of one configuration of this model."""
        return f"{self.MODEL}_{configuration}"

    def set_cache_hook(self, cache_hook) -> None:
        """`--use_cache` keys by request only: give each configuration its own table in the cache file, so its
        answers are never served to a plain run (or the other way round)."""
        db = getattr(cache_hook, "dbdict", None)
        self.cache_file = getattr(db, "filename", None)  # lm-eval's --use_cache file of this process, if any
        if db is not None:
            db.conn.execute(f'CREATE TABLE IF NOT EXISTS "{self.cache_table}" (key TEXT PRIMARY KEY, value BLOB)')
            db.conn.commit()
            db.tablename = self.cache_table
        super().set_cache_hook(cache_hook)

    def get_model_info(self) -> dict:
        base = getattr(super(), "get_model_info", None)
        info = base() if base is not None else {}
        info[RECORD_KEY] = self.run_record.to_dict()
        return info


class TransferLM(RecordedRun, HFLM):
    """HFLM with what our models share. A subclass names its `--model` (MODEL) and argument dataclass (SPEC), and
    in its __init__ calls `_parse`, then `_start` (HFLM on the model to evaluate), and sets `run_record` (the
    method record) and `cache_table` (via `_table`). `_row_entry` says what `_model_call` needs of a scoring row."""

    SPEC: type

    def _parse(self, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """lm-eval's model_args, split into our spec (parsed and checked once) and HFLM's arguments."""
        return parse_model_args(self.SPEC, self.MODEL, kwargs)

    def _start(self, pretrained: str, hf_kwargs: dict[str, Any]) -> None:
        """HFLM on `pretrained`, on cuda when there is one unless device= says otherwise."""
        hf_kwargs.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
        HFLM.__init__(self, pretrained=pretrained, **hf_kwargs)

    def tok_batch_encode(self, strings, *args, **kwargs):
        self._batch_contexts = list(strings)  # the prompts of the batch _model_generate is about to get, in order
        return super().tok_batch_encode(strings, *args, **kwargs)

    # ------------------------------------------------------------------ loglikelihood scoring rows
    def _row_entry(self, request: tuple[Any, list[int], list[int]], cut: int) -> Any:
        """What `_model_call` needs of one request's scoring row (None: nothing), `cut` tokens cut off its left."""
        return None

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        # each request's scoring row (its input tokens, as HFLM builds it) -> its `_row_entry`, for `_scored_row`
        self._score_rows: dict[tuple[int, ...], Any] = {}
        for request in requests:
            _, context_enc, continuation_enc = request
            full = (context_enc + continuation_enc)[-(self.max_length + 1) :]
            entry = self._row_entry(request, len(context_enc) + len(continuation_enc) - len(full))
            if entry is not None:
                self._score_rows[tuple(full[:-1])] = entry
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        finally:
            self._score_rows = {}

    def _scored_row(self, row: list[int]) -> tuple[Any, int]:
        """The `_row_entry` of a (right-padded) row given to `_model_call` and its unpadded length."""
        return match_padded_row(getattr(self, "_score_rows", {}), row)
