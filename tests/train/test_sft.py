"""SFT of the tiny student: the tokenizer and template, labels, a few real steps, save/reload, resume.

Everything runs TRL's SFTTrainer on the CPU with a very small student; the long "does it learn"
run is in test_distill_learns.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from distill_kit import make_dataset, problems, recipe_for, write_problems

from tracesynth.errors import ConfigError, UserError
from tracesynth.stages.train.args import check_sft_keys, checkpointing_field, default_sft_args, merge_sft_args
from tracesynth.stages.train.student import (
    CHATML_TEMPLATE,
    IM_END,
    THINK_END,
    THINK_START,
    load_student,
    train_tokenizer,
)
from tracesynth.stages.train.trainer import make_trainer, sft, train_and_save


def test_unknown_sft_key_is_named() -> None:
    check_sft_keys({"learning_rate": 1e-5, "num_train_epochs": 5, "packing": True, "assistant_only_loss": True})
    with pytest.raises(ConfigError, match=r"sft\.learnin_rate: .*did you mean 'learning_rate'"):
        check_sft_keys({"learnin_rate": 1e-5})


def test_yaml_exponents_become_numbers() -> None:
    # YAML 1.1 (PyYAML) reads 1e-5 as the string "1e-5"; TRL would fail deep inside the optimizer
    args = merge_sft_args({}, {"learning_rate": "1e-5", "weight_decay": "1e-4", "max_steps": "100"})
    assert args == {"learning_rate": 1e-5, "weight_decay": 1e-4, "max_steps": 100}
    with pytest.raises(ConfigError, match=r"sft\.learning_rate: expected a number, got 'fast'"):
        check_sft_keys({"learning_rate": "fast"})


def test_cpu_defaults_and_recipe_precedence() -> None:
    field = checkpointing_field()  # activation_checkpointing from transformers 5.23, gradient_checkpointing before
    cpu = default_sft_args(on_gpu=False, fmt="messages", tiny=False)
    assert cpu["bf16"] is False and cpu[field] is False and cpu["packing"] is False
    assert cpu["assistant_only_loss"] is True
    gpu = default_sft_args(on_gpu=True, fmt="prompt_completion", tiny=False)
    assert gpu["bf16"] is True and gpu[field] is True and gpu["completion_only_loss"] is True
    # the recipe wins; the old TRL name replaces a new-name default instead of being shadowed by it
    merged = merge_sft_args(cpu, {"gradient_checkpointing": True, "learning_rate": 1e-5})
    assert "activation_checkpointing" not in merged and merged["gradient_checkpointing"] is True
    assert merged["learning_rate"] == 1e-5
    # and the new name replaces an old-name default
    merged = merge_sft_args({"gradient_checkpointing": False}, {"activation_checkpointing": True})
    assert merged == {"activation_checkpointing": True}


def test_tokenizer_splits_digits_and_keeps_delimiters_whole() -> None:
    tok = train_tokenizer(["What is 12345 + 678?", "carry 1, write 9"] * 50, vocab_size=300)
    ids = tok.encode("12345", add_special_tokens=False)
    assert [tok.decode([i]) for i in ids] == ["1", "2", "3", "4", "5"]
    for special in (THINK_START, THINK_END, IM_END, "<|im_start|>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1, special
    assert tok.eos_token == IM_END and tok.pad_token_id != tok.eos_token_id
    text = tok.decode(
        tok.encode("<think>\n1+2=3\n</think>\n\n3<|im_end|>", add_special_tokens=False), skip_special_tokens=True
    )
    assert text == "<think>\n1+2=3\n</think>\n\n3"  # thinking tags survive decoding, the EOS does not
    assert "{% generation %}" in tok.chat_template.replace("{%- generation %}", "{% generation %}")
    assert tok.chat_template == CHATML_TEMPLATE


def test_reasoning_content_renders_like_think_tags() -> None:
    tok = train_tokenizer(["a b c"] * 10, vocab_size=300)
    user = {"role": "user", "content": "q"}
    inline = tok.apply_chat_template(
        [user, {"role": "assistant", "content": "<think>\nr\n</think>\n\nA"}], tokenize=False
    )
    field = tok.apply_chat_template(
        [user, {"role": "assistant", "content": "A", "reasoning_content": "r"}], tokenize=False
    )
    expected = "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</think>\n\nA<|im_end|>\n"
    assert inline == field == expected


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A few real SFT steps on 48 traces; returns (recipe, result, trainer-before-training)."""
    run = tmp_path_factory.mktemp("sft") / "run"
    recipe = recipe_for(run, "sft.max_steps=6", "sft.per_device_train_batch_size=8")
    make_dataset(recipe, problems(48, digits=2, seed=1))
    trainer, plan = make_trainer(recipe)
    result = train_and_save(trainer, plan)  # what sft() runs, keeping the trainer for inspection
    return recipe, result, trainer, plan


def test_only_assistant_tokens_and_the_eos_carry_loss(trained) -> None:
    _, _, trainer, _ = trained
    tok = trainer.processing_class
    row = trainer.train_dataset[0]
    ids, labels = row["input_ids"], row["labels"]
    learned = [i for i, lab in zip(ids, labels, strict=True) if lab != -100]
    masked = [i for i, lab in zip(ids, labels, strict=True) if lab == -100]
    assert tok.decode(learned).startswith("<think>\n")
    assert learned[-1] == tok.eos_token_id  # the end of turn is trained: the student learns to stop
    assert tok.decode(masked, skip_special_tokens=False).startswith("<|im_start|>user\nWhat is ")
    assert "Please reason step by step" in tok.decode(masked)  # the prompt is context, not target
    assert tok.eos_token_id in masked  # the user turn's <|im_end|> is not a target
    # labels equal the inputs wherever they are set
    assert all(lab == i for i, lab in zip(ids, labels, strict=True) if lab != -100)


def test_a_few_steps_change_the_weights_and_write_the_receipt(trained) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    recipe, result, _, plan = trained
    out = Path(result.output_dir)
    assert out == Path(recipe.run_dir) / "student"
    before = AutoModelForCausalLM.from_pretrained(plan.ckpt_dir / "init").state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    changed = [k for k in after if not torch.equal(before[k], after[k])]
    assert len(changed) == len(after)  # every tensor moved (no frozen layer, no silent no-op)
    info = json.loads((out / "train.json").read_text())
    assert info["steps"] == 6 and info["device"] == "cpu" and info["gpus"] == 0
    assert info["tokens_seen"] > 0 and info["tokens_per_s"] > 0 and info["wall_s"] > 0
    assert info["dtype"] == "fp32" and info["sft_args"]["assistant_only_loss"] is True
    assert [step for step, _ in info["loss_history"]] == [5] and info["loss_history"][-1][1] > 0  # logging_steps 5
    template = json.loads((out / "template.json").read_text())
    assert template["thinking_delimiters"] == [THINK_START, THINK_END] and template["chat_template_hash"]


def test_the_order_rows_arrived_in_does_not_change_the_student(tmp_path: Path) -> None:
    """Exported rows follow the teacher's arrival order; training on sample-id order makes re-runs repeat."""
    import torch
    from transformers import AutoModelForCausalLM

    probs = problems(24, digits=2, seed=4)
    weights = []
    for name, order in (("a", probs), ("b", probs[::-1])):
        recipe = recipe_for(tmp_path / name, "sft.max_steps=3", "sft.per_device_train_batch_size=4")
        make_dataset(recipe, order)
        weights.append(AutoModelForCausalLM.from_pretrained(sft(recipe).output_dir).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_save_reload_generate_round_trip(trained) -> None:
    import torch

    _, result, trainer, _ = trained
    model, tok = load_student(result.output_dir)
    assert tok.chat_template == CHATML_TEMPLATE and tok.eos_token == IM_END
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 12 + 34?"}], tokenize=False, add_generation_prompt=True
    )
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        a = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        b = (
            trainer.model.to("cpu")
            .eval()
            .generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        )
    assert model.config.use_cache is True
    assert a.shape[1] > enc["input_ids"].shape[1]
    assert torch.equal(a, b)  # the reloaded student is the trained one


def test_up_to_date_student_is_not_trained_again(trained) -> None:
    recipe, result, _, _ = trained
    again = sft(recipe)
    assert again.skipped and again.train["fingerprint"] == result.train["fingerprint"]


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    recipe = recipe_for(
        tmp_path / "run",
        "sft.max_steps=2",
        "sft.save_strategy=steps",
        "sft.save_steps=2",
        "sft.per_device_train_batch_size=4",
    )
    make_dataset(recipe, problems(16, digits=2, seed=2))
    first = sft(recipe)
    out = Path(first.output_dir)
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    for name in ("train.json", "config.json", "model.safetensors"):  # as if killed before the final save
        (out / name).unlink()
    longer = recipe_for(
        tmp_path / "run",
        "sft.max_steps=4",
        "sft.save_strategy=steps",
        "sft.save_steps=2",
        "sft.per_device_train_batch_size=4",
    )
    second = sft(longer)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["sft"]["steps"] == 4
    assert second.train["resumed_from"].endswith("checkpoint-2")
    assert second.train["steps"] == 4
    assert 0 < second.train["session_tokens"] < second.train["tokens_seen"]


def test_missing_dataset_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run `tracesynth export RECIPE` first"):
        sft(recipe_for(tmp_path / "run"))


def test_output_dir_for_variants(tmp_path: Path) -> None:
    recipe = recipe_for(tmp_path / "run", "sft.max_steps=1", "sft.per_device_train_batch_size=4")
    make_dataset(recipe, problems(8, digits=1, seed=3), reasoning="none")
    res = sft(recipe, output_dir=tmp_path / "answers_only")
    assert (tmp_path / "answers_only" / "train.json").exists()
    assert json.loads((tmp_path / "answers_only" / "template.json").read_text())["reasoning"] == "none"
    shutil.rmtree(res.output_dir)


# -- through the real CLI -----------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracesynth", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"run_dir: {tmp_path / 'run'}\nsource: {{kind: gym, name: chain_sum}}\nsft: {{learnin_rate: 1.0e-5}}\n"
    )
    res = _cli("recipe", "check", str(recipe), cwd=tmp_path)
    assert res.returncode == 2 and "sft.learnin_rate: unknown key" in res.stderr and "Traceback" not in res.stderr
    recipe.write_text(f"run_dir: {tmp_path / 'run'}\n")
    res = _cli("sft", str(recipe), cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: ") and "tracesynth export" in res.stderr


def test_cli_sft_then_eval(tmp_path: Path) -> None:
    run = tmp_path / "run"
    recipe = recipe_for(run)
    make_dataset(recipe, problems(16, digits=1, seed=5))
    eval_file = write_problems(tmp_path / "eval.jsonl", problems(6, digits=3, seed=6, prefix="e"))
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(run),
                "sft": {"max_steps": 2, "per_device_train_batch_size": 4, "disable_tqdm": True, "save_strategy": "no"},
                "eval": {"source": {"kind": "jsonl", "path": str(eval_file)}, "max_new_tokens": 8},
            }
        )
    )
    res = _cli("sft", str(path), "--set", "sft.learning_rate=1e-3", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "sft: 2 steps" in res.stderr and json.loads((run / "student" / "train.json").read_text())["steps"] == 2
    res = _cli("eval", str(path), "--no-baseline", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("eval after: pass@1 ") and "on 6 problems" in res.stdout
    data = json.loads((run / "eval.json").read_text())
    assert data["after"]["n_problems"] == 6 and "before" not in data


def test_prompt_completion_format_trains_on_the_completion_only(tmp_path: Path) -> None:
    import datasets

    recipe = recipe_for(tmp_path / "run", "sft.max_steps=1", "sft.per_device_train_batch_size=4")
    make_dataset(recipe, problems(8, digits=1, seed=4))
    ds = datasets.load_dataset(str(tmp_path / "run" / "dataset"), split="train")
    pc = ds.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]}, remove_columns=["messages"])
    pc.save_to_disk(str(tmp_path / "pc"))
    trainer, plan = make_trainer(recipe, dataset_dir=tmp_path / "pc")
    assert plan.fmt == "prompt_completion" and plan.args["completion_only_loss"] is True
    row = trainer.train_dataset[0]
    tok = trainer.processing_class
    learned = [i for i, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != -100]
    assert tok.decode(learned).startswith("<think>\n") and tok.eos_token_id in learned
    assert "What is" not in tok.decode(learned)


def test_sft_refuses_a_student_whose_template_cuts_the_reasoning_out_of_the_first_row(tmp_path: Path) -> None:
    import datasets
    from repo import FIXTURES

    from tracesynth.stages.train.student import build_tiny

    recipe = recipe_for(tmp_path / "run", "sft.max_steps=1")
    make_dataset(recipe, problems(4, digits=1, seed=4))
    ds = datasets.load_dataset(str(tmp_path / "run" / "dataset"), split="train")
    pc = ds.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]}, remove_columns=["messages"])
    pc.save_to_disk(str(tmp_path / "pc"))
    model, tok = build_tiny([m["content"] for r in ds for m in r["messages"]] + ["<｜User｜><｜Assistant｜>"], seed=0)
    tok.chat_template = (FIXTURES / "templates" / "r1_distill_like.jinja").read_text().strip()
    model.save_pretrained(str(tmp_path / "student"))
    tok.save_pretrained(str(tmp_path / "student"))
    distilled = recipe_for(
        tmp_path / "run", "sft.max_steps=1", "student.init=null", f"student.model={tmp_path / 'student'}"
    )
    with pytest.raises(ConfigError, match=r"^sft: dataset: .*drops the reasoning.*prompt_completion"):
        make_trainer(distilled, dataset_dir=tmp_path / "pc")
