"""Chat-template markup that must never appear in teacher text, and where to find it.

A teacher reply holding ``<|im_end|>\\n<|im_start|>user`` (or any special token of the student's chat
template) would become real special tokens when the student's tokenizer encodes the training text:
a fake end of turn, a fake user turn. The format verifier fails such samples (tag ``chat_markup``) and
export refuses to write them. :data:`COMMON_MARKUP` holds the special tokens of the chat templates
students are commonly trained with (ChatML / Qwen, Llama 3, DeepSeek, Mistral, Gemma, Phi);
:func:`tokenizer_markup` adds the special tokens of a local tokenizer folder (read from its JSON files,
without importing transformers). This module finds text; it reads at most two JSON files.
"""

from __future__ import annotations

import json
from pathlib import Path

COMMON_MARKUP: tuple[str, ...] = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",  # ChatML (Qwen, the tiny student)
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",  # Llama 3
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<｜User｜>",
    "<｜Assistant｜>",  # DeepSeek
    "[INST]",
    "[/INST]",  # Mistral / Llama 2
    "<start_of_turn>",
    "<end_of_turn>",  # Gemma
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "<|end|>",  # Phi
)


def tokenizer_markup(folder: str | Path | None) -> list[str]:
    """The special tokens of the tokenizer in ``folder`` (tokenizer_config.json / tokenizer.json), if any."""
    if not folder:
        return []
    d = Path(folder)
    out: set[str] = set()
    try:
        cfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        for tok in (cfg.get("added_tokens_decoder") or {}).values():
            if isinstance(tok, dict) and tok.get("special") and isinstance(tok.get("content"), str):
                out.add(tok["content"])
        for key in ("eos_token", "bos_token", "pad_token", "unk_token"):
            v = cfg.get(key)
            if isinstance(v, str):
                out.add(v)
            elif isinstance(v, dict) and isinstance(v.get("content"), str):
                out.add(v["content"])
    except (OSError, ValueError):
        pass
    return sorted(t for t in out if len(t) >= 3)


def find_markup(text: str | None, extra: tuple[str, ...] | list[str] = ()) -> str | None:
    """The first chat markup token found in ``text``, or None."""
    if not text:
        return None
    for tok in (*COMMON_MARKUP, *extra):
        if tok and tok in text:
            return tok
    return None


__all__ = ["COMMON_MARKUP", "find_markup", "tokenizer_markup"]
