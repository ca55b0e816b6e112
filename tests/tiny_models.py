"""Tiny random causal LMs of several architectures, built from configs, plus a character tokenizer."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ?:.,'\n$+-*/=()")
VOCAB = 96
COMMON = dict(vocab_size=VOCAB, pad_token_id=0, eos_token_id=1, bos_token_id=2)


def char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {c: i for i, c in enumerate(["<pad>", "<eos>", "<bos>", "<unk>"] + CHARS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    tok.padding_side = "left"
    return tok


def _decoder(layers, d, **extra):
    """Config arguments shared by the Llama-like tiny models (grouped-query attention, 4 heads)."""
    return dict(
        hidden_size=d,
        intermediate_size=2 * d,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        **COMMON,
        **extra,
    )


def _llama(layers, d):
    return LlamaForCausalLM(LlamaConfig(**_decoder(layers, d)))


def _qwen2(layers, d):
    return Qwen2ForCausalLM(Qwen2Config(**_decoder(layers, d)))


def _gemma3(layers, d):
    return Gemma3ForCausalLM(Gemma3TextConfig(**_decoder(layers, d, head_dim=d // 4, sliding_window=8)))


def _gpt2(layers, d):
    return GPT2LMHeadModel(GPT2Config(n_embd=d, n_layer=layers, n_head=4, n_positions=1024, **COMMON))


def _neox(layers, d):
    return GPTNeoXForCausalLM(
        GPTNeoXConfig(hidden_size=d, intermediate_size=2 * d, num_hidden_layers=layers, num_attention_heads=4, **COMMON)
    )


BUILDERS = {"llama": _llama, "qwen2": _qwen2, "gemma3": _gemma3, "gpt2": _gpt2, "gpt_neox": _neox}


def tiny_model(arch: str = "llama", layers: int = 4, d: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    model = BUILDERS[arch](layers, d)
    model.eval()
    return model
