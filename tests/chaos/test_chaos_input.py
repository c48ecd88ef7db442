"""Bad input gets a clear error: one ``error:`` line naming the file or field, exit 2, nothing sent or written."""

from __future__ import annotations

import itertools
import resource
import subprocess
import time

import pytest
from hostile import Hostile

pytestmark = pytest.mark.chaos


def _limit_memory() -> None:  # preexec_fn: the alias bomb must not take the machine down with it
    two_gb = 2 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (two_gb, two_gb))


def _alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": 9 anchors of 9 aliases each, 9**9 (387M) strings once expanded."""
    names = "abcdefghijklmnopqrstuvwxyz"[:levels]
    lines = [f"      {names[0]}: &{names[0]} [{', '.join(['lol'] * 9)}]"]
    for prev, name in itertools.pairwise(names):
        lines.append(f"      {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "name: bomb\nteacher:\n  sampling:\n    extra_body:\n" + "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_quickly_with_one_line(kit, tmp_path):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(_alias_bomb())
    t0 = time.monotonic()
    try:
        proc = kit.run_cli("recipe", "show", recipe, timeout=20, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        proc = None
    took = time.monotonic() - t0
    assert proc is not None, "`recipe show` on a YAML alias bomb was still running after 20 s (killed)"
    kit.assert_one_line_error(proc, code=2)
    assert took < 10, f"`recipe show` took {took:.1f}s to refuse an alias bomb"


def test_run_dir_holding_other_files_is_refused_and_left_untouched(kit, tmp_path):
    folder = tmp_path / "notarun"
    folder.mkdir()
    (folder / "important.txt").write_text("do not touch\n")
    before = sorted(p.name for p in folder.iterdir())
    with Hostile() as h:
        kit.write_problems(tmp_path / "problems.jsonl", 3)
        recipe = kit.write_recipe(tmp_path, h.base_url, run_dir=str(folder))
        proc = kit.run_cli("harvest", recipe, "--quiet", timeout=60)
        requests = h.count()
    after = sorted(p.name for p in folder.iterdir())
    assert after == before, f"files written into a folder that is not a run folder: {sorted(set(after) - set(before))}"
    assert requests == 0, f"{requests} requests sent for a run that should not start"
    line = kit.assert_one_line_error(proc, code=2)
    assert str(folder) in line and "--force" in line, f"the line should name {folder} and --force: {line}"


def test_run_dir_holding_other_files_is_used_with_force(kit, tmp_path):
    folder = tmp_path / "notarun"
    folder.mkdir()
    (folder / "important.txt").write_text("do not touch\n")
    with Hostile() as h:
        kit.write_problems(tmp_path / "problems.jsonl", 3)
        recipe = kit.write_recipe(tmp_path, h.base_url, run_dir=str(folder))
        proc = kit.run_cli("harvest", recipe, "--quiet", "--force", timeout=60)
    kit.assert_no_traceback(proc)
    assert proc.returncode == 0, f"harvest --force: exit {proc.returncode}: {kit.tail(proc.stderr, 2)}"
    assert kit.count_lines(folder / "samples.jsonl") == 3
    assert (folder / "important.txt").read_text() == "do not touch\n"


@pytest.mark.parametrize("command", ["recipe check", "harvest"])
def test_template_without_the_question_placeholder_is_refused(kit, tmp_path, command):
    template = tmp_path / "no_question.txt"
    template.write_text("Solve it.\n\nPlease reason step by step, and put your final answer within \\boxed{}.\n")
    with Hostile() as h:
        kit.write_problems(tmp_path / "problems.jsonl", 3)
        recipe = kit.write_recipe(tmp_path, h.base_url, prompt={"template": str(template)})
        proc = kit.run_cli(*command.split(), recipe, timeout=60)
        requests = h.count()
    assert requests == 0, f"{requests} prompts without the question were sent to the teacher"
    line = kit.assert_one_line_error(proc, code=2)
    assert template.name in line, f"the line does not name the template: {line}"


@pytest.mark.parametrize(
    ("sections", "names"),
    [
        ({"verify": {"verifiers": ["math", "maths"]}}, "maths"),
        ({"teacher": {"budget_usd": -5}}, "budget_usd"),
        ({"teacher": {"prices": {"input": -1.0, "output": 10.0}}}, "prices"),
        ({"eval": {"backend": "endpoint", "model": "student"}}, "base_url"),
    ],
    ids=["unknown_verifier", "negative_budget", "negative_prices", "endpoint_without_base_url"],
)
def test_recipe_check_refuses_a_recipe_that_cannot_work(kit, tmp_path, sections, names):
    kit.write_problems(tmp_path / "problems.jsonl", 3)
    kit.write_problems(tmp_path / "eval.jsonl", 3, start=100)
    if "eval" in sections:
        sections["eval"]["source"] = {
            "kind": "jsonl",
            "path": str(tmp_path / "eval.jsonl"),
            "columns": {"question": "question", "answer": "answer"},
        }
    recipe = kit.write_recipe(tmp_path, "http://127.0.0.1:9/v1", **sections)
    proc = kit.run_cli("recipe", "check", recipe, timeout=60)
    line = kit.assert_one_line_error(proc, code=2)
    assert names in line, f"the line does not name {names}: {line}"


def test_set_flow_mapping_without_a_space_after_the_colon_is_an_error(kit, tmp_path):
    kit.write_problems(tmp_path / "problems.jsonl", 3)
    recipe = kit.write_recipe(tmp_path, "http://127.0.0.1:9/v1")
    proc = kit.run_cli("recipe", "show", recipe, "--set", "teacher.sampling.extra_body={top_k:20}", timeout=60)
    line = kit.assert_one_line_error(proc, code=2)  # YAML reads {top_k:20} as {"top_k:20": null}
    assert "space" in line, f"the line does not point at the missing space after the colon: {line}"
