"""choice, gym, format and judge verifiers; score() robustness; keep() policies."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from tracesynth.accounting.tokens import CHARS_PER_TOKEN
from tracesynth.config import HygieneConfig, SourceConfig
from tracesynth.records import Problem, Sample, Usage, Verdict
from tracesynth.sources.problems import iter_problems
from tracesynth.stages.verify.registry import VERIFIERS, keep, score
from tracesynth.stages.verify.verifiers.base import TAGS, Outcome


def sample(content: str | None, reasoning: str | None = "I think.", **kw: Any) -> Sample:
    return Sample(id="s-1", problem_id="p-1", index=0, model="m", content=content, reasoning=reasoning, **kw)


# -- choice ----------------------------------------------------------------------------------
CHOICES = ["12", "15", "18", "21"]
CHOICE_TABLE = [
    ("B", "\\boxed{B}", "pass", ""),
    ("B", "\\boxed{\\text{(B)}}", "pass", ""),
    ("B", "The answer is (B).", "pass", ""),
    ("B", "so the answer is B) 15", "pass", ""),
    ("B", "**Answer: B**", "pass", ""),
    ("B", "Answer: **B**", "pass", ""),
    ("B", "Final answer: b.", "pass", ""),
    ("B", "Working...\n\n**B**", "pass", ""),
    ("B", "Working...\n(B)", "pass", ""),
    ("B", "Working...\nB. 15", "pass", ""),
    ("B", "\\boxed{15}", "pass", ""),  # option text instead of the letter
    ("(B)", "\\boxed{B}", "pass", ""),
    ("\\text{(B)}", "Answer: B", "pass", ""),
    ("15", "\\boxed{B}", "pass", ""),  # gold given as option text
    ("B", "\\boxed{C}", "fail", "mismatch"),
    ("B", "The answer is (A).", "fail", "mismatch"),
    ("B", "\\boxed{F}", "fail", "mismatch"),  # not an option
    ("B", "\\boxed{16}", "fail", "mismatch"),
    ("B", "I am not sure which one.", "fail", "no_answer"),
    ("B", "The answer is a bit unclear", "fail", "mismatch"),  # "a bit" is not option A
    ("B", "", "fail", "no_answer"),
    ("Z", "\\boxed{B}", "unverifiable", "unparseable_gold"),
]


@pytest.mark.parametrize(("gold", "content", "status", "tag"), CHOICE_TABLE)
def test_choice_table(gold: str, content: str, status: str, tag: str) -> None:
    p = Problem(id="p-1", prompt="q", answer=gold, metadata={"choices": CHOICES})
    (v,) = score(p, sample(content), ["choice"])
    assert (v.status, v.tag) == (status, tag), v


def test_choice_with_lettered_mapping_and_no_choices() -> None:
    p = Problem(id="p-1", prompt="q", answer="C", metadata={"options": {"A": "red", "B": "blue", "C": "green"}})
    assert score(p, sample("\\boxed{green}"), ["choice"])[0].status == "pass"
    assert score(p, sample("\\boxed{D}"), ["choice"])[0].status == "fail"  # only A-C exist
    bare = Problem(id="p-1", prompt="q", answer="D")
    assert score(bare, sample("Answer: D"), ["choice"])[0].status == "pass"


# -- gym -------------------------------------------------------------------------------------
def gym_problems(task: str, n: int = 3, seed: int = 7) -> list[Problem]:
    src = SourceConfig(kind="gym", name=task, size=n, seed=seed, hygiene=HygieneConfig(require_answer=False))
    return list(iter_problems([src]))


def test_gym_table() -> None:
    arith = gym_problems("basic_arithmetic")[0]
    gold = arith.metadata["gym_entry"]["answer"]
    wrong = str(int(gold) + 1)
    spell = gym_problems("spell_backward")[0]
    word = spell.metadata["gym_entry"]["answer"]
    count = gym_problems("countdown")[0]
    entry = count.metadata["gym_entry"]
    # another expression with the same value: countdown's own scorer evaluates it
    alt = f"({entry['answer']})"
    rows = [
        (arith, f"\\boxed{{{gold}}}", "pass", "", 1.0),
        (arith, f"<answer>{gold}</answer>", "pass", "", 1.0),
        (arith, f"The final answer is {gold}.", "pass", "", 1.0),
        (arith, gold, "pass", "", 1.0),  # the whole answer part
        (arith, f"\\boxed{{{wrong}}}", "fail", "mismatch", 0.0),
        (spell, f"\\boxed{{{word[:-1]}}}", "fail", "partial", None),
        (spell, f"\\boxed{{{word}}}", "pass", "", 1.0),
        (count, f"\\boxed{{{entry['answer']}}}", "pass", "", 1.0),
        (count, f"\\boxed{{{alt}}}", "pass", "", 1.0),
        (count, "\\boxed{1 + 1}", "fail", "partial", 0.05),  # countdown gives 0.05 to a well-formed miss
    ]
    for p, content, status, tag, sc in rows:
        (v,) = score(p, sample(content), ["gym"])
        assert (v.status, v.tag) == (status, tag), (p.metadata["gym_task"], content, v)
        if sc is not None:
            assert v.score == pytest.approx(sc)
        if tag == "partial":
            assert 0 < v.score < 1  # the partial score is kept


def test_gym_needs_its_entry() -> None:
    (v,) = score(Problem(id="p-1", prompt="q", answer="3"), sample("\\boxed{3}"), ["gym"])
    assert (v.status, v.tag) == ("unverifiable", "no_reference")


def test_gym_scorer_error_is_kept_as_unverifiable() -> None:
    p = Problem(id="p-1", prompt="q", metadata={"gym_task": "no_such_task", "gym_entry": {"answer": "1"}})
    (v,) = score(p, sample("\\boxed{1}"), ["gym"])
    assert (v.status, v.tag) == ("unverifiable", "verifier_error")
    assert "no_such_task" in v.reason


# -- format ----------------------------------------------------------------------------------
def test_format_checks() -> None:
    p = Problem(id="p-1", prompt="q", answer="1")
    ok = sample("\\boxed{1}", reasoning="Let me think step by step.", finish_reason="stop")
    assert score(p, ok, ["format"])[0].status == "pass"
    cases = [
        (sample("\\boxed{1}", finish_reason="length"), "truncated"),
        (sample("\\boxed{1}", reasoning="\n\n"), "no_reasoning"),
        (sample("\\boxed{1}", reasoning=None), "no_reasoning"),
        (sample("<think>still thinking \\boxed{1}"), "unclosed_think"),
        (sample("\\boxed{1}", reasoning="a <think> b"), "unclosed_think"),
    ]
    for s, tag in cases:
        (v,) = score(p, s, ["format"])
        assert (v.status, v.tag) == ("fail", tag), v
    (v,) = score(p, sample("\\boxed{1}", finish_reason="length"), ["format"], {"format": {"allow_truncated": True}})
    assert v.status == "pass"


QWQ_REPLY = (  # QwQ-32B-Preview's shape: plain text, no delimiter, a boxed answer at the end
    "Let me see. First try x = 2: that gives \\boxed{4}? No, recheck.\n\n"
    "Actually 3 + 4 = 7, so x = 7.\n\n**Final Answer**\n\n\\[ \\boxed{7} \\]"
)


def test_format_judges_a_reply_without_delimiters_by_its_final_answer() -> None:
    p = Problem(id="p-1", prompt="q", answer="7")
    (v,) = score(p, sample(QWQ_REPLY, reasoning=None), ["format"])
    assert (v.status, v.details["undelimited"]) == ("pass", True)
    assert v.details["reasoning_tokens"] > v.details["answer_tokens"] > 0  # the reply split at its final answer
    cases = [
        (sample("I am not sure what to do here, sorry.", reasoning=None), "no_final_answer"),
        (sample("\\boxed{7}", reasoning=None), "no_reasoning"),  # nothing before the final answer
    ]
    for s, tag in cases:
        (v,) = score(p, s, ["format"])
        assert (v.status, v.tag) == ("fail", tag), v
    (v,) = score(p, sample(QWQ_REPLY, reasoning=None), ["format"], {"format": {"undelimited": False}})
    assert (v.status, v.tag) == ("fail", "undelimited")
    (v,) = score(p, sample(QWQ_REPLY, reasoning=""), ["format"])  # a reasoning parser ran and found nothing
    assert (v.status, v.tag) == ("fail", "no_reasoning")


def test_answer_verifiers_read_only_the_final_answer_of_a_reply_without_delimiters() -> None:
    p = Problem(id="p-1", prompt="q", answer="7")
    for boxes in ("first", "all", "last"):
        (v,) = score(p, sample(QWQ_REPLY, reasoning=None), ["math"], {"math": {"boxes": boxes}})
        assert (v.status, v.answer) == ("pass", "7"), (boxes, v)  # the \\boxed{4} it rejected is reasoning
    (v,) = score(
        p, sample("So it is 7, I guess: seven.", reasoning=None), ["math"], {"math": {"fallback": "last_number"}}
    )
    assert (v.status, v.answer) == ("pass", "7")  # no final-answer mark: the whole reply is searched as before


def test_format_token_bounds_use_usage_when_reported() -> None:
    p = Problem(id="p-1", prompt="q", answer="1")
    s = sample("\\boxed{1}", reasoning="r" * 40, usage=Usage(completion_tokens=1000, reasoning_tokens=900))
    (v,) = score(p, s, ["format"], {"format": {"max_reasoning_tokens": 800}})
    assert (v.status, v.tag) == ("fail", "too_long")
    assert v.details["token_source"] == "usage" and v.details["reasoning_tokens"] == 900
    (v,) = score(p, s, ["format"], {"format": {"min_answer_tokens": 200}})
    assert (v.status, v.tag) == ("fail", "too_short")  # 1000 - 900 = 100 answer tokens
    plain = sample("\\boxed{1}", reasoning="r" * 400)
    (v,) = score(p, plain, ["format"], {"format": {"min_reasoning_tokens": 400 / CHARS_PER_TOKEN + 2}})
    assert v.tag == "too_short" and v.details["token_source"].startswith("estimate")


def test_format_script_check_catches_language_mixing() -> None:
    p = Problem(id="p-1", prompt="q", answer="1")
    opts = {"format": {"scripts": ["latin"]}}
    assert score(p, sample("The answer is $\\alpha = 1$, so π r² works: \\boxed{1}"), ["format"], opts)[0].status == (
        "pass"
    )
    (v,) = score(p, sample("所以答案是 \\boxed{1}"), ["format"], opts)
    assert (v.status, v.tag) == ("fail", "script")
    both = {"format": {"scripts": ["latin"], "script_fields": ["content", "reasoning"]}}
    (v,) = score(p, sample("\\boxed{1}", reasoning="Сначала посчитаем"), ["format"], both)
    assert v.tag == "script" and v.details["reasoning_script_share"] == 0


# -- score() and keep() ----------------------------------------------------------------------
def test_every_non_pass_has_a_known_tag_and_a_reason() -> None:
    p = Problem(id="p-1", prompt="q", answer="3", metadata={"choices": ["1", "2", "3"]})
    for content in ("\\boxed{3}", "\\boxed{4}", "nothing", "\\boxed{\\frac{}{}}", ""):
        for v in score(p, sample(content), list(VERIFIERS)):
            if v.status != "pass":
                assert v.tag in TAGS and v.reason, v


def test_a_raising_verifier_is_unverifiable_with_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(problem: Problem, s: Sample, options: dict[str, Any]) -> Outcome:
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(VERIFIERS, "boom", boom)
    vs = score(Problem(id="p-1", prompt="q", answer="3"), sample("\\boxed{3}"), ["boom", "math", "nope"])
    assert [(v.verifier, v.status, v.tag) for v in vs] == [
        ("boom", "unverifiable", "verifier_error"),
        ("math", "pass", ""),
        ("nope", "unverifiable", "verifier_error"),
    ]
    assert "RuntimeError: disk on fire" in vs[0].reason and "unknown verifier" in vs[2].reason


def test_a_busy_verifier_hits_its_cpu_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    def spin(problem: Problem, s: Sample, options: dict[str, Any]) -> Outcome:
        while True:
            pass

    monkeypatch.setitem(VERIFIERS, "spin", spin)
    (v,) = score(Problem(id="p-1", prompt="q", answer="3"), sample("x"), ["spin"], {"spin": {"timeout_s": 0.3}})
    assert (v.status, v.tag) == ("unverifiable", "timeout")


def test_error_samples_are_unverifiable() -> None:
    s = sample(None, error="HTTP 500", error_kind="server")
    (v,) = score(Problem(id="p-1", prompt="q", answer="3"), s, ["math"])
    assert (v.status, v.tag) == ("unverifiable", "sample_error") and "HTTP 500" in v.reason


def V(verifier: str, status: str, tag: str = "", **details: Any) -> Verdict:
    return Verdict(sample_id="s", problem_id="p", verifier=verifier, status=status, tag=tag, details=details)


@pytest.mark.parametrize(
    ("statuses", "all_", "any_", "majority"),
    [
        (["pass"], True, True, True),
        (["pass", "pass"], True, True, True),
        (["pass", "fail"], False, True, False),
        (["pass", "unverifiable"], False, True, False),
        (["pass", "pass", "fail"], False, True, True),
        (["unverifiable"], False, False, False),
        (["fail", "fail"], False, False, False),
        ([], False, False, False),
    ],
)
def test_keep_policies(statuses: list[str], all_: bool, any_: bool, majority: bool) -> None:
    vs = [V(f"v{i}", s) for i, s in enumerate(statuses)]
    assert (keep(vs, "all"), keep(vs, "any"), keep(vs, "majority")) == (all_, any_, majority)


def test_keep_with_a_fallback_judge() -> None:
    judge_pass = V("judge", "pass", fallback_for=["math"])
    assert keep([V("math", "unverifiable", "unparseable_answer"), judge_pass], "all")
    assert not keep(
        [V("math", "unverifiable", "unparseable_answer"), V("judge", "fail", "mismatch", fallback_for=["math"])], "all"
    )
    assert keep([V("math", "pass"), V("judge", "unverifiable", "not_needed")], "all")
    assert not keep([V("math", "fail"), V("judge", "unverifiable", "not_needed")], "all")
    with pytest.raises(Exception, match="unknown policy"):
        keep([V("math", "pass")], "most")


# -- judge (against a stub OpenAI-compatible server on 127.0.0.1) ------------------------------
class _Judge(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []
    mode = "grade"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"body": body, "auth": self.headers.get("Authorization")})
        if self.mode == "500":
            self.send_response(500)
            self.end_headers()
            return
        user = body["messages"][-1]["content"]
        ref = user.split("Reference answer:\n", 1)[1].split("\n", 1)[0].strip()
        got = user.split("Student's final answer:\n", 1)[1].split("\n", 1)[0].strip()
        word = "CORRECT" if ref.replace(" ", "") == got.replace(" ", "") else "INCORRECT"
        text = "I cannot tell." if self.mode == "mumble" else f"Comparing the two.\n{word}"
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def judge_url() -> Iterator[str]:
    _Judge.seen, _Judge.mode = [], "grade"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_judge_decides_and_keeps_secrets_out(judge_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-judge-key")
    opts = {"judge": {"base_url": judge_url, "model": "cheap", "api_key_env": "JUDGE_KEY", "max_attempts": 1}}
    p = Problem(id="p-1", prompt="What is 1+1?", answer="two")
    (v,) = score(p, sample("The result is \\boxed{two}"), ["judge"], opts)
    assert v.status == "pass" and v.answer == "two"
    (v,) = score(p, sample("The result is \\boxed{three}"), ["judge"], opts)
    assert (v.status, v.tag) == ("fail", "mismatch")
    sent = _Judge.seen[0]
    assert sent["auth"] == "Bearer sk-secret-judge-key" and sent["body"]["model"] == "cheap"
    assert "What is 1+1?" in sent["body"]["messages"][-1]["content"]
    assert sent["body"]["messages"][0]["role"] == "system"
    assert "sk-secret" not in v.model_dump_json()


def test_judge_as_fallback_only_when_rules_cannot_decide(judge_url: str) -> None:
    opts = {"judge": {"base_url": judge_url, "model": "cheap", "max_attempts": 1}}
    p = Problem(id="p-1", prompt="Name the shape.", answer="\\text{ellipse}")
    decided = score(p, sample("\\boxed{\\text{ellipse}}"), ["math", "judge"], opts)
    assert [(v.status, v.tag) for v in decided] == [("pass", ""), ("unverifiable", "not_needed")]
    assert _Judge.seen == []  # the judge was not asked
    undecided = score(p, sample("\\boxed{\\frac{}{}}"), ["math", "judge"], opts)
    assert undecided[0].tag == "unparseable_answer" and undecided[1].status == "fail"  # '\frac{}{}' != ellipse
    assert undecided[1].details["fallback_for"] == ["math"] and len(_Judge.seen) == 1
    assert not keep(undecided, "all")


def test_judge_errors_are_unverifiable(judge_url: str) -> None:
    p = Problem(id="p-1", prompt="q", answer="2")
    opts = {"judge": {"base_url": judge_url, "model": "cheap", "max_attempts": 1}}
    _Judge.mode = "mumble"
    (v,) = score(p, sample("\\boxed{2}"), ["judge"], opts)
    assert (v.status, v.tag) == ("unverifiable", "judge_error") and "no CORRECT/INCORRECT" in v.reason
    _Judge.mode = "500"
    (v,) = score(p, sample("\\boxed{2}"), ["judge"], opts)
    assert (v.status, v.tag) == ("unverifiable", "judge_error")
    (v,) = score(p, sample("\\boxed{2}"), ["judge"], {"judge": {}})
    assert (v.status, v.tag) == ("unverifiable", "judge_error") and "not configured" in v.reason
