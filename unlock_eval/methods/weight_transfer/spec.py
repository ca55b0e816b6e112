"""The arguments of a weight-space transfer run (task arithmetic), each declared once."""

from __future__ import annotations

from dataclasses import dataclass

from unlock_eval.methods.spec import TransferModels
from unlock_eval.methods.weight_transfer.merge import VOCAB_MODES, check_vocab
from unlock_eval.params import as_float, param


@dataclass(kw_only=True)
class WeightTransferSpec(TransferModels):
    """Task arithmetic: θ_target + lam·(θ_source − θ_source_locked); three checkpoints of one architecture."""

    source: str = param(help="the post-trained model whose weight delta is transferred (unlocked)")
    source_locked: str = param(help="the model it was post-trained from (locked): the delta is source - this")
    lam: float = param(1.0, "delta weight: target + lam * (source - source_locked), finite", as_float)
    vocab: str = param(
        VOCAB_MODES[0],
        "exact (vocabulary row counts must match) or shared_prefix (merge the shared rows after checking the "
        "tokenizers agree on them)",
        check=check_vocab,
    )
