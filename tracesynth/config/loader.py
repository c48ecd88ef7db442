"""Reading recipes: YAML (safe and bounded) with ``--set a.b.c=value`` overrides, errors that name the line.

* :func:`load_recipe` — defaults < the file < overrides; a typo is an error naming the key and its
  line in the file (or the ``--set`` that brought it);
* :func:`yaml_load` — the one YAML reader of recipes: safe (no objects), ``1e-5`` read as a float
  (YAML 1.2), refusing texts over :data:`MAX_RECIPE_BYTES` and aliases that expand past
  :data:`MAX_EXPANDED_NODES` values (the "billion laughs"), and keys like ``top_k:20`` (YAML's
  reading of a mapping with no space after the colon);
* :func:`recipe_yaml` — the resolved recipe (``tracesynth recipe show``).

This module reads and validates recipes; it does not run stages or resolve data files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tracesynth.config.schema import Recipe
from tracesynth.errors import ConfigError


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-5`` as a float, as YAML 1.2 and every user does (YAML 1.1 wants ``1.0e-5``).

    PyYAML leaves an exponent without a dot as a *string*, which typed fields coerce but pass-through
    blocks (``sft``, ``sampling.extra_body``) would forward as text to TRL or the server.
    """


_RecipeLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


MAX_RECIPE_BYTES = 1_000_000
MAX_EXPANDED_NODES = 100_000  # what the recipe's aliases may expand to (a "billion laughs" expands to 9**9)


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (stops counting past ``limit``)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a node that contains itself would expand forever
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo, limit)
            if size > limit:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, limit) + _expanded_size(v, memo, limit)
            if size > limit:
                break
    memo[key] = size
    return size


def yaml_load(text: str, where: str = "<recipe>") -> Any:
    """Parse recipe YAML: safe (no objects), exponent floats fixed (:class:`_RecipeLoader`), and bounded:
    a text over :data:`MAX_RECIPE_BYTES` or aliases that expand past :data:`MAX_EXPANDED_NODES` are refused
    before anything is built (the "billion laughs" attack would eat the machine's memory)."""
    if len(text) > MAX_RECIPE_BYTES:
        raise ConfigError(f"{where}: {len(text):,} bytes; a recipe is at most {MAX_RECIPE_BYTES:,}")
    loader = _RecipeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{where}: its YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values; "
                "refusing it (write the values out, or use fewer aliases)"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _missing_space(data: Any, path: str = "") -> str | None:
    """A mapping key like ``top_k:20`` with no value: YAML's reading of ``{top_k:20}`` (a space is needed)."""
    if isinstance(data, dict):
        for k, v in data.items():
            here = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and v is None and re.fullmatch(r"[A-Za-z_][\w.-]*:[^\s:].*", k):
                return here
            found = _missing_space(v, here)
            if found:
                return found
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found = _missing_space(v, f"{path}.{i}")
            if found:
                return found
    return None


def _no_missing_space(data: Any, origin: str) -> None:
    where = _missing_space(data)
    if where:
        key = where.rsplit(".", 1)[-1]
        name, _, value = key.partition(":")
        raise ConfigError(
            f"{origin}: {where}: YAML reads {key!r} as a key with no value; write "
            f"'{name}: {value}' (a space after the colon)"
        )


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (["a","b","c"], value parsed as YAML: numbers, lists, null ...)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"--set {text!r}: empty key in {key!r}")
    try:
        value = yaml_load(raw, f"--set {key.strip()}") if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({_first_line(exc)})") from None
    _no_missing_space({key.strip(): value} if isinstance(value, (dict, list)) else {}, f"--set {text!r}")
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides in order to a plain dict (returns the same dict)."""
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            nxt = node.get(part) if isinstance(node, dict) else None
            if nxt is None:
                nxt = {}
                node[part] = nxt
            elif not isinstance(nxt, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {text!r}: {where} is a {type(nxt).__name__}, not a mapping")
            node = nxt
        node[parts[-1]] = value
    return data


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe (or the defaults when ``path`` is None) and apply overrides."""
    overrides = list(overrides or [])
    text = ""
    data: dict[str, Any] = {}
    where = "<defaults>"
    if path is not None:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{where}: recipe file not found") from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read recipe ({exc.strerror})") from None
        try:
            loaded = yaml_load(text, where)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or _first_line(exc)
            raise ConfigError(f"{where}{line}: invalid YAML: {problem}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{where}: a recipe must be a mapping of sections, got {type(loaded).__name__}")
        _no_missing_space(loaded, where)
        data = loaded
    apply_overrides(data, overrides)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        # drop pydantic's union-branch names (e.g. 'SourceConfig', 'list[SourceConfig]')
        loc = [p for p in loc if not (p[:1].isupper() or p.startswith("list["))]
        field = ".".join(loc) or "<recipe>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        line_no = _line_of(text, loc) if text else None
        set_keys = [o.split("=", 1)[0].strip() for o in overrides]
        hit = [k for k in set_keys if k == field or k.startswith(field + ".") or field.startswith(k + ".")]
        origin = f"--set {hit[-1]}" if hit else f"{where}{f':{line_no}' if line_no else ''}"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{origin}: {field}: {msg}{more}") from None


def _line_of(text: str, loc: list[str]) -> int | None:
    """The 1-based line of the deepest key of ``loc`` found in the YAML text."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def recipe_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML (what `tracesynth recipe show` prints)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
