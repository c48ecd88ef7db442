"""Recipes: defaults < file < --set; every mistake is one line naming the file, line or field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracesynth.config import Recipe, load_recipe, parse_override
from tracesynth.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_defaults_then_file_then_overrides(tmp_path):
    p = write(tmp_path, "name: x\nteacher:\n  concurrency: 8\n  sampling: {temperature: 0.2}\n")
    r = load_recipe(p, ["teacher.concurrency=16", "teacher.base_urls=[http://127.0.0.1:9/v1]"])
    assert r.name == "x"
    assert r.teacher.concurrency == 16
    assert r.teacher.sampling.temperature == 0.2
    assert r.teacher.sampling.top_p == 0.95  # default kept
    assert r.teacher.base_urls == ["http://127.0.0.1:9/v1"]


def test_override_type_coercion(tmp_path):
    sets = ["teacher.budget_usd=12.5", "teacher.rpm=null", "curate.near_dedup=true", "eval.thinking_caps=[64, 128]"]
    r = load_recipe(None, sets)
    assert r.teacher.budget_usd == 12.5
    assert r.teacher.rpm is None
    assert r.curate.near_dedup is True
    assert r.eval.thinking_caps == [64, 128]


def test_the_old_name_of_thinking_caps_says_what_it_is_now():
    with pytest.raises(ConfigError, match=r"eval\.thinking_caps"):
        load_recipe(None, ["eval.budgets=[64]"])


def test_unknown_key_names_field_and_line(tmp_path):
    p = write(tmp_path, "name: x\nteacher:\n  model: m\n  concurency: 8\n")
    with pytest.raises(ConfigError) as exc:
        load_recipe(p)
    msg = str(exc.value)
    assert msg == f"{p}:4: teacher.concurency: unknown key"


def test_wrong_type_names_field_and_line(tmp_path):
    p = write(tmp_path, "teacher:\n  concurrency: lots\n")
    with pytest.raises(ConfigError, match=r"r\.yaml:2: teacher\.concurrency: .*integer"):
        load_recipe(p)


def test_bad_yaml_names_line(tmp_path):
    p = write(tmp_path, "name: x\nteacher: [unclosed\n  model: m\n")
    with pytest.raises(ConfigError, match=r"r\.yaml:\d+: invalid YAML"):
        load_recipe(p)


def test_missing_file():
    with pytest.raises(ConfigError, match=r"nope\.yaml: recipe file not found"):
        load_recipe("nope.yaml")


def test_non_mapping_recipe(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("teacher.concurrency", "expected KEY.PATH=VALUE"),
        ("teacher..model=x", "empty key"),
        ("name.x=1", r"^--set name\.x: name: .*string"),
        ("teacher.concurrency=[1", "not valid YAML"),
    ],
)
def test_bad_override(override, match):
    with pytest.raises(ConfigError, match=match):
        load_recipe(None, [override])


def test_override_into_scalar_of_file(tmp_path):
    with pytest.raises(ConfigError, match="name is a str, not a mapping"):
        load_recipe(write(tmp_path, "name: x\n"), ["name.x=1"])


def test_override_error_points_at_set(tmp_path):
    with pytest.raises(ConfigError, match=r"^--set teacher\.concurrency: teacher\.concurrency: .*integer"):
        load_recipe(None, ["teacher.concurrency=many"])


def test_api_key_must_be_env_name():
    with pytest.raises(ConfigError, match=r"teacher\.api_key_env: .*NAME of an environment variable"):
        load_recipe(None, ["teacher.api_key_env=sk-abc123-secret.key"])


def test_errors_are_one_line(tmp_path):
    p = write(tmp_path, "teacher:\n  concurrency: -1\n  timeout_s: 0\n")
    with pytest.raises(ConfigError) as exc:
        load_recipe(p)
    assert "\n" not in str(exc.value)
    assert "(and 1 more)" in str(exc.value)


def test_parse_override_values():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    assert parse_override("a=[x, y]") == (["a"], ["x", "y"])
    assert parse_override("a=") == (["a"], "")


def test_source_list_and_hash():
    r = Recipe.model_validate({"source": [{"kind": "jsonl", "path": "a"}, {"kind": "gym", "name": "chain_sum"}]})
    assert [s.kind for s in r.sources] == ["jsonl", "gym"]
    assert r.hash() == Recipe.model_validate(r.model_dump()).hash()
    assert r.hash() != load_recipe(None, ["name=other"]).hash()


def test_exponent_floats_without_a_dot_are_numbers_even_in_pass_through_blocks(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-5 as the string '1e-5'; pass-through blocks would forward the text."""
    r = tmp_path / "r.yaml"
    r.write_text(
        "name: t\nteacher:\n  sampling: {extra_body: {min_p: 1e-3, tag: '1e-3', top_k: 20}}\n"
        "sft: {learning_rate: 1e-5, weight_decay: 1.0e-4, adam_epsilon: 1E-8}\n"
    )
    rec = load_recipe(r, ["sft.warmup_ratio=5e-2"])
    assert rec.teacher.sampling.extra_body == {"min_p": 0.001, "tag": "1e-3", "top_k": 20}
    assert rec.sft == {"learning_rate": 1e-5, "weight_decay": 1e-4, "adam_epsilon": 1e-8, "warmup_ratio": 0.05}
    assert all(type(v) is float for v in rec.sft.values())


def test_the_simulated_teachers_options_are_checked_when_the_recipe_loads() -> None:
    r = load_recipe(None, ["teacher.sim.options.reasoning=undelimited", "teacher.sim.options.usage=deepseek"])
    assert r.teacher.sim.options == {"reasoning": "undelimited", "usage": "deepseek"}
    for bad, field in (("reasoning=qwq", "reasoning"), ("usage=odd", "usage"), ("bogus=1", "bogus")):
        with pytest.raises(ConfigError, match=rf"teacher\.sim\.options: .*{field}: ") as exc:
            load_recipe(None, [f"teacher.sim.options.{bad}"])
        assert "\n" not in str(exc.value)
