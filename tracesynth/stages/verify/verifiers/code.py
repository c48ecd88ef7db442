"""The ``code`` verifier: run the final fenced code block against the problem's tests in the sandbox.

Test formats read from ``Problem.tests`` (``metadata`` supplies names where a format lacks them):

* stdin/stdout pairs: ``[{"input": ..., "output": ...}, ...]`` or ``{"inputs": [...], "outputs": [...]}``
  (APPS / TACO ``input_output``) — one sandboxed run per pair, output compared line by line
  (trailing spaces and blank lines ignored; option ``compare: exact | lines | tokens``, with
  ``float_tol`` for numeric tokens);
* function calls: the same with ``fn_name`` (``{"fn_name": f, "inputs": [[args]], "outputs": [...]}``)
  or LiveCodeBench-style ``{"testtype": "functional"}`` pairs with ``metadata.fn_name`` — one run
  calling ``f(*args)`` for every case;
* test code: a string (or list of assert lines) run after the solution; with
  ``metadata.entry_point`` it is HumanEval's ``check(candidate)`` and the problem prompt is put in
  front of the solution, so both a full function and a body-only completion work.

Results are compared as plain values: what the solution returns is turned, inside the sandbox, into
exact builtin values (numbers, strings, booleans, None and containers of them) before any comparison,
so an object whose ``__eq__`` always answers True (or any type the tests did not ask for) fails;
test scripts call the solution's functions through the same guard.

A test program only passes when it prints a per-run random token after the tests, so a
solution that exits early (``sys.exit(0)`` before the asserts) fails. A solution that reads its
own source to forge the token, or rebinds the guard's names, is not caught.

Verdicts: all tests pass → ``pass``; wrong output / failed assert → ``fail`` ``mismatch``; a crash →
``runtime_error``; over time → ``timeout``; memory or output limit → ``resource_limit``; no code
block → ``no_answer``; the sandbox cannot run → ``unverifiable`` ``sandbox_error``.

Options: ``time_limit_s`` (CPU per run, default 5; wall = 2x + 1), ``memory_mb`` (1024), ``nproc``
(32), ``output_bytes`` (1 MB), ``max_tests`` (all), ``stop_on_first_failure`` (true),
``site_packages`` (false: the interpreter runs with ``-S``, the standard library only).
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from tracesynth.records import Problem, Sample
from tracesynth.stages.verify.verifiers import sandbox
from tracesynth.stages.verify.verifiers.answer import answer_text, final_code
from tracesynth.stages.verify.verifiers.base import Outcome, failed, passed, unverifiable

# Run before the solution: the plain-value guard, with references to the builtins it needs taken first.
# Values the solution returns are compared only after being turned into exact builtin values (int, float,
# str, bool, None, and lists / tuples / dicts / sets of them), so a returned object whose __eq__ always
# answers True — or a subclass of int whose __eq__ does — compares by its value and type, never by its
# own methods; any other type is a test failure naming it.
_PRELUDE = """
def _ts_guard_factory():
    _type, _isinstance = type, isinstance
    _int, _float, _str, _complex = int.__int__, float.__float__, str.__str__, complex.__complex__
    _liter, _titer, _siter, _fiter = list.__iter__, tuple.__iter__, set.__iter__, frozenset.__iter__
    _ditems = dict.items

    def plain(x, depth=0):
        if depth > 64:
            raise TypeError("the returned value is nested too deeply")
        t = _type(x)
        if x is None or t is bool:
            return x
        if _isinstance(x, bool):
            return bool(x)
        if _isinstance(x, int):
            return _int(x)
        if _isinstance(x, float):
            return _float(x)
        if _isinstance(x, str):
            return _str(x)
        if _isinstance(x, complex):
            return _complex(x)
        if _isinstance(x, tuple):
            return tuple(plain(v, depth + 1) for v in _titer(x))
        if _isinstance(x, list):
            return [plain(v, depth + 1) for v in _liter(x)]
        if _isinstance(x, dict):
            return {plain(k, depth + 1): plain(v, depth + 1) for k, v in _ditems(x)}
        if _isinstance(x, frozenset):
            return frozenset(plain(v, depth + 1) for v in _fiter(x))
        if _isinstance(x, set):
            return {plain(v, depth + 1) for v in _siter(x)}
        raise TypeError("returned a %s, not a plain value (int, float, str, bool, None, list, tuple, dict, set)"
                        % t.__name__)

    def same(a, b):
        ta, tb = _type(a), _type(b)
        if ta in (int, float) and tb in (int, float):
            return a == b
        if ta is not tb:
            return (ta in (list, tuple) and tb in (list, tuple)) and len(a) == len(b) and all(
                same(x, y) for x, y in zip(a, b))
        if ta in (list, tuple):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if ta is dict:
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        return a == b

    def guard(fn):
        def guarded(*args, **kwargs):
            return plain(fn(*args, **kwargs))

        guarded.__name__ = getattr(fn, "__name__", "candidate")
        guarded.__wrapped__ = fn
        return guarded

    return plain, same, guard


_ts_plain, _ts_same, _ts_guard = _ts_guard_factory()
del _ts_guard_factory

"""

_FUNC_HARNESS = """

import json as _ts_json
_ts_cases = _ts_json.loads({cases!r})
for _ts_i, (_ts_args, _ts_want) in enumerate(_ts_cases):
    _ts_got = _ts_plain({fn}(*_ts_args))
    if not _ts_same(_ts_got, _ts_want):
        raise AssertionError("case %d: expected %r, got %r" % (_ts_i + 1, _ts_want, _ts_got))
print({token!r})
"""

# A test script calls the solution's functions itself: each top-level function is wrapped first, so an
# assert compares plain values.
_GUARD_FUNCTIONS = """

import types as _ts_types
for _ts_name, _ts_value in list(globals().items()):
    if not _ts_name.startswith("_ts_") and _ts_types.FunctionType is type(_ts_value):
        globals()[_ts_name] = _ts_guard(_ts_value)
"""


def _stdio_pairs(inputs: list[Any], outputs: list[Any]) -> list[tuple[str, str]]:
    def text(v: Any) -> str:
        return "\n".join(map(str, v)) if isinstance(v, list) else str(v)

    return [(text(i), text(o)) for i, o in zip(inputs, outputs, strict=False)]


def plan_tests(problem: Problem) -> tuple[str, Any]:
    """(kind, payload): ``stdio`` [(in, out)], ``functional`` (fn, [(args, want)]), ``script`` str, or ``none``."""
    tests, meta = problem.tests, problem.metadata
    fn = meta.get("fn_name") or meta.get("func_name")
    if isinstance(tests, dict):
        if "test" in tests:
            return "script", (str(tests["test"]), tests.get("entry_point") or meta.get("entry_point"))
        if "inputs" in tests and "outputs" in tests:
            if tests.get("fn_name") or fn:
                pairs = list(zip(tests["inputs"], tests["outputs"], strict=False))
                return "functional", (tests.get("fn_name") or fn, pairs)
            return "stdio", _stdio_pairs(tests["inputs"], tests["outputs"])
    if isinstance(tests, list) and tests and all(isinstance(t, dict) for t in tests):
        if all(t.get("testtype") == "functional" for t in tests) and fn:
            cases = [
                ([json.loads(a) for a in str(t["input"]).splitlines() if a.strip()], json.loads(t["output"]))
                for t in tests
            ]
            return "functional", (fn, cases)
        return "stdio", [(str(t.get("input", "")), str(t.get("output", ""))) for t in tests]
    if isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests):
        return "script", ("\n".join(tests), None)
    if isinstance(tests, str) and tests.strip():
        return "script", (tests, meta.get("entry_point"))
    return "none", None


def same_output(got: str, want: str, mode: str = "lines", float_tol: float | None = None) -> bool:
    if mode == "exact":
        return got == want
    if mode == "tokens":
        a, b = got.split(), want.split()
        if len(a) != len(b):
            return False
        for x, y in zip(a, b, strict=True):
            if x == y:
                continue
            try:
                if float_tol is not None and abs(float(x) - float(y)) <= float_tol * max(1.0, abs(float(y))):
                    continue
            except ValueError:
                pass
            return False
        return True

    def lines(s: str) -> list[str]:
        out = [ln.rstrip() for ln in s.replace("\r\n", "\n").split("\n")]
        while out and not out[-1]:
            out.pop()
        return out

    return lines(got) == lines(want)


def _limits(options: dict[str, Any]) -> sandbox.Limits:
    t = float(options.get("time_limit_s", 5.0))
    return sandbox.Limits(
        cpu_s=t,
        wall_s=2 * t + 1,
        memory_mb=int(options.get("memory_mb", 1024)),
        nproc=int(options.get("nproc", 32)),
        output_bytes=int(options.get("output_bytes", 1_000_000)),
    )


def _run(source: str, stdin: str, options: dict[str, Any]) -> sandbox.RunResult:
    caps = sandbox.capabilities()
    flags = ["-I"] if options.get("site_packages") else ["-I", "-S"]
    return sandbox.run(
        [caps.python, *flags, "main.py"], stdin=stdin, files={"main.py": source}, limits=_limits(options)
    )


def _from_run(res: sandbox.RunResult, where: str, code: str, details: dict[str, Any]) -> Outcome:
    details = {**details, "sandbox": "+".join(res.features) or "none"}
    if res.status == "sandbox_error":
        return unverifiable("sandbox_error", f"{where}: {res.reason}", **details)
    if res.status == "timeout":
        return failed("timeout", f"{where}: {res.reason}", code, **details)
    if res.status in ("memory", "output_limit"):
        return failed("resource_limit", f"{where}: {res.reason}", code, **details)
    tag = "mismatch" if "AssertionError" in res.reason else "runtime_error"
    return failed(tag, f"{where}: {res.reason}", code, **details)


def verify_code(problem: Problem, sample: Sample, options: dict[str, Any]) -> Outcome:
    kind, payload = plan_tests(problem)
    if kind == "none":
        return unverifiable("no_reference", "the problem has no tests")
    code = final_code(answer_text(sample))
    if code is None or not code.strip():
        return failed("no_answer", "no ```python code block in the final answer")
    shown = code[:500]
    if kind == "stdio":
        cases = payload[: options["max_tests"]] if options.get("max_tests") else payload
        n, ok = len(cases), 0
        details: dict[str, Any] = {"kind": kind, "tests": n}
        first_failure: Outcome | None = None
        for i, (stdin, want) in enumerate(cases, 1):
            res = _run(code, stdin, options)
            if res.status == "ok" and same_output(
                res.stdout, want, options.get("compare", "lines"), options.get("float_tol")
            ):
                ok += 1
                continue
            if first_failure is None:
                if res.status == "ok":
                    got, exp = res.stdout.strip()[:80], want.strip()[:80]
                    first_failure = failed("mismatch", f"test {i}/{n}: expected {exp!r}, got {got!r}", shown, **details)
                else:
                    first_failure = _from_run(res, f"test {i}/{n}", shown, details)
            if options.get("stop_on_first_failure", True) or first_failure.status == "unverifiable":
                break
        if first_failure is None:
            return passed(shown, kind=kind, tests=n, passed=n)
        first_failure.details["passed"] = ok
        first_failure.score = ok / n if n else 0.0
        return first_failure
    token = "tracesynth-tests-passed-" + secrets.token_hex(8)
    if kind == "functional":
        fn, cases = payload
        source = (
            _PRELUDE + code + _FUNC_HARNESS.format(cases=json.dumps([[a, w] for a, w in cases]), fn=fn, token=token)
        )
        n = len(cases)
    else:
        test_code, entry = payload
        prefix = ""
        if entry and problem.prompt and not re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
            prefix = problem.prompt.rstrip("\n") + "\n"
        elif entry and problem.prompt:
            prefix = problem.prompt + "\n    pass\n\n"  # keeps the prompt's imports; the answer redefines it
        check = f"\ncheck(_ts_guard({entry}))\n" if entry else "\n"
        source = f"{_PRELUDE}{prefix}{code}\n{_GUARD_FUNCTIONS}\n{test_code}\n{check}print({token!r})\n"
        n = 1
    res = _run(source, "", options)
    details = {"kind": kind, "tests": n}
    if res.status == "ok" and token in res.stdout:
        return passed(shown, **details, passed=n)
    if res.status == "ok":
        return failed("mismatch", "the tests did not run to the end (the program exited early)", shown, **details)
    return _from_run(res, "tests", shown, details)


__all__ = ["plan_tests", "same_output", "verify_code"]
