"""The student: a tiny from-config Qwen2 model with a locally trained tokenizer, or a real checkpoint.

``student.init: tiny`` builds what tests and the offline demo train on the CPU, through the same
code path as a real 7B/32B run:

* a byte-level BPE tokenizer trained here (``tokenizers``) on the dataset text, digits split one
  by one (``pre_tokenizers.Digits(individual_digits=True)``: a small model cannot learn arithmetic
  over merged digit chunks), wrapped as a ``transformers.PreTrainedTokenizerFast``;
* special tokens ``<|im_start|>``, ``<|im_end|>`` (the EOS), ``<|pad|>``, and the thinking
  delimiters ``<think>`` / ``</think>`` as single non-special tokens (decoding keeps them, and
  budget forcing can stop on one token id);
* a ChatML chat template with ``{% generation %}`` markers around the assistant turn *including*
  its ``<|im_end|>``, so TRL's ``assistant_only_loss`` trains the student to stop. An assistant
  message may carry its reasoning inline (``<think>…</think>`` in ``content``) or in a
  ``reasoning_content`` field; both render the same text;
* a ``Qwen2Config`` from :data:`TINY_DEFAULTS` updated with the recipe's ``student.tiny``.

``student.model`` names a local checkpoint or a Hub model, loaded with ``from_pretrained`` (tests
never touch the Hub). This module builds and loads models; it does not train or evaluate them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracesynth.errors import ConfigError
from tracesynth.thinking import THINK

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"
THINK_START, THINK_END = THINK.start, THINK.end

# ChatML with generation markers. The assistant's <|im_end|> is inside {% generation %}: it
# carries loss, so the student learns to stop (TRL warns when a template leaves it out).
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}"
    "{%- if message.get('reasoning_content') %}"
    "{{- '<think>\\n' + message['reasoning_content'] | trim + '\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# The tiny student's shape (0.15M parameters with a 512-token vocabulary): 2 heads of 32 with one key/value
# head — vLLM's CPU attention refuses head_dim 16 — and the same parameter count as the 4x16 shape it
# replaces. How fast it learns the demo task against that shape and a wider one: BENCHMARKS.md "SFT".
TINY_DEFAULTS: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.02,
    "use_cache": True,
}


def message_texts(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Every text a dataset row carries (messages, reasoning, prompt/completion), for tokenizer training."""
    for row in rows:
        for key in ("messages", "prompt", "completion"):
            value = row.get(key)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                for msg in value:
                    if isinstance(msg, dict):
                        yield str(msg.get("role", ""))
                        for field in ("content", "reasoning_content"):
                            if isinstance(msg.get(field), str) and msg[field]:
                                yield msg[field]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (digits split individually) trained on ``texts``, with the ChatML template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, IM_START, IM_END]
    if vocab_size < 256 + len(specials) + 2:
        raise ConfigError(f"student.vocab_size: {vocab_size} is too small for a byte-level tokenizer (min 261)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 2,  # room for the two thinking delimiters added below
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Thinking delimiters: one id each, but not "special" (decode(skip_special_tokens=True) keeps them).
    tok.add_tokens(
        [
            AddedToken(THINK_START, special=False, normalized=False),
            AddedToken(THINK_END, special=False, normalized=False),
        ]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        model_max_length=TINY_DEFAULTS["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def tiny_config(tokenizer: PreTrainedTokenizerFast, overrides: dict[str, Any] | None = None):
    """A ``Qwen2Config`` for the tiny student: :data:`TINY_DEFAULTS` < ``overrides`` (the recipe's ``student.tiny``)."""
    from transformers import Qwen2Config

    fields = {**TINY_DEFAULTS, **(overrides or {})}
    known = set(Qwen2Config().to_dict()) | {"rope_parameters"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"student.tiny.{unknown[0]}: not a Qwen2Config field")
    fields.update(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    return Qwen2Config(**fields)


def build_tiny(
    texts: Iterable[str], *, vocab_size: int = 512, overrides: dict[str, Any] | None = None, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Train the tokenizer on ``texts`` and initialise a tiny Qwen2 student (seeded, fp32)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = train_tokenizer(texts, vocab_size)
    config = tiny_config(tokenizer, overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    return model, tokenizer


def untrained_like(student_dir: str | Path, *, seed: int = 0) -> tuple[Any, Any]:
    """A freshly initialised model with the config and tokenizer of a saved tiny student (the "before")."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    config = AutoConfig.from_pretrained(student_dir)
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    torch.manual_seed(seed)
    model: Any = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    return model, tokenizer


def load_student(
    name_or_path: str | Path, *, dtype: str = "auto", device: str | None = None, revision: str | None = None
) -> tuple[Any, Any]:  # (a transformers model, its tokenizer): Auto* classes are not typed as such
    """Load a checkpoint (local path or Hub name) and its tokenizer for generation, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype: Any = dtype
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    elif isinstance(dtype, str):
        torch_dtype = getattr(torch, dtype)
    path = str(name_or_path)
    model: Any
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, revision=revision)
    except OSError as exc:
        raise ConfigError(f"model {path!r}: cannot load ({str(exc).splitlines()[0]})") from None
    model.to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_tokenizer(recipe: Any) -> Any | None:
    """The student's tokenizer without loading weights: a local folder or a cached Hub model's, or for the tiny
    student one trained on a few texts (same template and specials); None when it is not on this machine."""
    name = recipe.student.model
    if name is None:
        from tracesynth.thinking import THINK

        return train_tokenizer(
            ["What is 17 + 25?", THINK.wrap("17 + 25 = 42.", "42"), "assistant user system"] * 4,
            recipe.student.vocab_size,
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name), local_files_only=True)
    except (OSError, ValueError):
        return None


def read_template(directory: str | Path) -> dict[str, Any]:
    """The ``template.json`` saved beside a dataset or a student ({} when there is none)."""
    path = Path(directory) / "template.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data
