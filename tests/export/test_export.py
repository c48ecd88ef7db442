"""Dataset export: TRL conversational rows, round trips through load_from_disk and Parquet, card, template.json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from curate_kit import make_run, recipe, sample

from tracesynth.errors import UserError
from tracesynth.records import Problem
from tracesynth.stages.curate import curate
from tracesynth.stages.export.dataset import export

GSM_TEST_0 = "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins."


def build(tmp_path, n=5, **sections):
    run = tmp_path / "run"
    probs = [
        Problem(
            id=f"p{i}",
            prompt=f"Compute {i} plus {3 * i} for case {i}.",
            answer=str(4 * i),
            source="arith_sample/train",
            domain="arith" if i % 2 else "math",
        )
        for i in range(n)
    ]
    probs.append(Problem(id="dirty", prompt=GSM_TEST_0, answer="18", source="arith_sample/train"))
    specs = [
        sample(
            p.id,
            0,
            reasoning=f"Step one for {p.id}.\nStep two.",
            content=f"So \\boxed{{{p.answer}}}.",
            tokens=40 * (i + 1),
            cost=0.01,
        )
        for i, p in enumerate(probs)
    ]
    make_run(run, probs, specs, failures=3, template=sections.get("prompt", {}).get("template", "boxed_math"))
    r = recipe(run, **sections)
    curate(r)
    return r, run


def test_messages_with_think_tags_round_trip(tmp_path):
    import datasets

    r, _ = build(tmp_path, prompt={"template": "boxed_math"})
    res = export(r)
    assert res.rows == 5 and res.format == "messages"
    ds = datasets.load_dataset(res.dataset_dir, split="train")
    pq = datasets.load_dataset("parquet", data_files=res.parquet_files, split="train")
    assert ds.to_list() == pq.to_list() and len(ds) == 5
    row = ds[0]
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["user", "assistant"]
    assert row["messages"][0]["content"].startswith("Compute 0 plus 0") and "\\boxed{}" in row["messages"][0]["content"]
    assert row["messages"][1]["content"] == "<think>\nStep one for p0.\nStep two.\n</think>\n\nSo \\boxed{0}."
    assert row["problem_id"] == "p0" and row["teacher"] == "teacher-x" and row["answer"] == "0"
    assert row["verdicts"] == [{"verifier": "math", "status": "pass", "answer": "0", "tag": "", "reason": ""}]
    assert row["trace_tokens"] == 40 and row["completion_tokens"] == 40 and row["cost_usd"] == pytest.approx(0.01)
    assert set(ds["domain"]) == {"math", "arith"}


def test_reasoning_content_field(tmp_path):
    import datasets

    r, _ = build(tmp_path, dataset={"reasoning": "reasoning_content"})
    ds = datasets.load_dataset(export(r).dataset_dir, split="train")
    reply = ds[1]["messages"][-1]
    assert reply == {
        "role": "assistant",
        "content": "So \\boxed{4}.",
        "reasoning_content": "Step one for p1.\nStep two.",
    }
    assert ds[1]["messages"][0]["reasoning_content"] is None


def test_prompt_completion_format_and_system_prompt(tmp_path):
    import datasets

    fmt = {"format": "prompt_completion", "system_prompt": "Be brief."}
    r, _ = build(tmp_path, prompt={"template": "sky_t1"}, dataset=fmt)
    ds = datasets.load_dataset(export(r).dataset_dir, split="train")
    assert set(ds.column_names) >= {"prompt", "completion", "problem_id"} and "messages" not in ds.column_names
    assert ds[0]["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert ds[0]["completion"][0]["role"] == "assistant" and ds[0]["completion"][0]["content"].startswith("<think>")
    r2, _ = build(tmp_path / "b", prompt={"template": "sky_t1"}, dataset={"system_prompt": ""})
    ds2 = datasets.load_dataset(export(r2).dataset_dir, split="train")
    assert [m["role"] for m in ds2[0]["messages"]] == ["user", "assistant"]
    template = json.loads((tmp_path / "b" / "run" / "dataset" / "template.json").read_text())
    assert template["system_prompt"] is None


def test_parquet_shards_are_the_train_split_every_hf_tool_finds(tmp_path):
    import datasets

    r, _ = build(tmp_path, n=7, dataset={"shard_rows": 3})
    res = export(r)
    names = [p.rsplit("/", 1)[1] for p in res.parquet_files]
    assert [n[:20] for n in names] == ["train-00000-of-00003", "train-00001-of-00003", "train-00002-of-00003"]
    glob = str(tmp_path / "run" / "dataset" / "data" / "*.parquet")
    pq = datasets.load_dataset("parquet", data_files=glob, split="train")
    assert sorted(pq["problem_id"]) == sorted(f"p{i}" for i in range(7))
    folder = datasets.load_dataset(res.dataset_dir)  # the card's YAML header names the split and its files
    assert list(folder) == ["train"] and folder["train"].num_rows == 7
    assert "configs:" in (tmp_path / "run" / "dataset" / "README.md").read_text().split("---")[1]


def test_a_re_export_is_never_read_from_a_stale_datasets_cache(tmp_path):
    import datasets

    r, _ = build(tmp_path, n=3)
    first = datasets.load_dataset(export(r).dataset_dir, split="train")
    r2 = r.model_copy(update={"dataset": r.dataset.model_copy(update={"reasoning": "none"})})
    second = datasets.load_dataset(export(r2).dataset_dir, split="train")
    assert "<think>" in first[0]["messages"][-1]["content"]
    assert "<think>" not in second[0]["messages"][-1]["content"]


def test_template_json(tmp_path):
    r, run = build(tmp_path, prompt={"template": "sky_t1"})
    export(r)
    t = json.loads((run / "dataset" / "template.json").read_text())
    assert t["thinking_delimiters"] == ["<think>", "</think>"] and t["reasoning"] == "think_tags"
    assert t["system_prompt"].startswith("Your role as an assistant") and t["prompt_template"] == "sky_t1"
    assert t["user_template"] == "Return your final response within \\boxed{}. {{ question }}"
    from tracesynth.sources.prompts import template_hash

    assert t["template_hash"] == template_hash(r.prompt) and t["recipe_hash"] == r.hash()


def test_card_states_provenance_counts_cost_decontam_and_licence(tmp_path):
    r, run = build(tmp_path, source={"kind": "builtin", "name": "arith_sample"}, dataset={"license": "cc-by-4.0"})
    export(r)
    card = (run / "dataset" / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-4.0\n")
    assert "teacher model(s): teacher-x" in card and "http://127.0.0.1:1/v1" in card
    assert f"hash `{r.hash()}`" in card and '"temperature": 0.6' in card
    assert "| decontaminate | 6 | 5 | 5 | contaminated 1 |" in card
    assert "| curation | dirty | gsm8k:test | gsm8k-test-0000 | janet s ducks lay 16 eggs per day |" in card
    # 6 successful samples at $0.01 + 3 failures at $0.002
    assert "total harvest cost: **$0.0660**" in card and "($0.0060 (3 calls)" not in card
    assert "failed calls $0.0060 (3 calls)" in card
    assert "source `arith_sample:train`: Apache-2.0" in card
    assert "```\n" in card and "#" * 40 in card  # length histogram
    assert "| math | 3 |" in card and "| arith | 2 |" in card


def test_card_says_when_decontamination_was_off(tmp_path):
    r, run = build(tmp_path, curate={"decontam": {"enabled": False}})
    export(r)
    card = (run / "dataset" / "README.md").read_text()
    assert "Decontamination was turned OFF" in card and "curate.decontam.enabled: false" in card


def test_export_errors_and_failed_export_keeps_previous(tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"traces\.jsonl: no traces; run `tracesynth curate` first"):
        export(recipe(tmp_path / "none"))
    r, run = build(tmp_path)
    export(r)
    before = sorted(p.name for p in (run / "dataset").iterdir())
    import tracesynth.stages.export.card as card

    def boom(*a, **k):
        raise RuntimeError("card failed")

    monkeypatch.setattr(card, "render_card", boom)
    with pytest.raises(RuntimeError, match="card failed"):
        export(r)
    assert sorted(p.name for p in (run / "dataset").iterdir()) == before
    assert not (run / "dataset.tmp").exists()
    (run / "traces.jsonl").write_text("")
    with pytest.raises(UserError, match=r"curation kept no traces"):
        export(r)


@pytest.mark.slow
def test_rows_are_what_trl_calls_conversational(tmp_path):
    import datasets
    from trl.data_utils import is_conversational

    r, _ = build(tmp_path)
    assert is_conversational(datasets.load_dataset(export(r).dataset_dir, split="train")[0])
    r2, _ = build(tmp_path / "b", dataset={"format": "prompt_completion"})
    assert is_conversational(datasets.load_dataset(export(r2).dataset_dir, split="train")[0])


def test_cli_export(tmp_path):
    _, run = build(tmp_path)
    y = tmp_path / "r.yaml"
    y.write_text(f"name: t\nrun_dir: {run}\nsource: {{kind: jsonl, path: x.jsonl}}\nteacher: {{model: teacher-x}}\n")
    res = subprocess.run(
        [sys.executable, "-m", "tracesynth", "export", str(y)], capture_output=True, text=True, timeout=180
    )
    assert res.returncode == 0, res.stderr
    assert "export: 5 rows (messages, reasoning think_tags)" in res.stdout
    assert (run / "dataset" / "README.md").exists()


def test_a_teacher_that_did_not_separate_its_thinking_is_trained_with_it_inside_the_delimiters():
    from tracesynth.records import Trace
    from tracesynth.stages.export.dataset import assistant_message

    reply = "Let me see: 3 + 4 is 7.\n\nChecking: 7 - 4 = 3, right.\n\n**Final Answer**\n\n\\[ \\boxed{7} \\]"
    trace = Trace(sample_id="s", problem_id="p", reasoning=None, content=reply)  # QwQ-32B-Preview's shape
    want = "Let me see: 3 + 4 is 7.\n\nChecking: 7 - 4 = 3, right."
    final = "**Final Answer**\n\n\\[ \\boxed{7} \\]"
    assert assistant_message(trace, "think_tags")["content"] == f"<think>\n{want}\n</think>\n\n{final}"
    assert assistant_message(trace, "reasoning_content") == {
        "role": "assistant",
        "content": final,
        "reasoning_content": want,
    }
    assert assistant_message(trace, "none")["content"] == final
    # nothing marks a final answer: the reply is kept whole, as the answer
    bare = Trace(sample_id="s", problem_id="p", reasoning=None, content="no answer here")
    assert assistant_message(bare, "think_tags")["content"] == "<think>\n\n</think>\n\nno answer here"
