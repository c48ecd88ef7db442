"""``tracesynth sim-teacher``: one CLI flag per :class:`~tracesynth.sim.options.SimOptions` field.

The typer command is built from the model, so the flags, their help and their defaults never
drift from the Python API. Differences: ``--api-key-env NAME`` names the environment variable
holding the key (the key itself is never a flag), ``--script`` and ``--latency`` take the
string forms SimOptions parses. Bad values are a one-line :class:`~tracesynth.errors.UserError`.
This module imports only pydantic and typer; the server is imported when the command runs.
"""

from __future__ import annotations

import inspect
import os
from typing import Annotated, Any, Optional, get_args, get_origin

import typer
from pydantic import ValidationError

from tracesynth.errors import UserError
from tracesynth.sim.options import SimOptions

HELP = (
    "Run the simulated OpenAI-compatible teacher on 127.0.0.1 (prints its base URL, then serves "
    "until Ctrl-C / SIGTERM)."
)


def _flag_type(annotation: Any) -> Any:
    """The plain click-friendly type for a field (literals, lists, specs and secrets become str)."""
    if annotation in (int, float, bool, str):
        return annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is not None and len(args) == 1 and args[0] in (int, float, str):
        return Optional[args[0]]  # noqa: UP045 - click needs Optional
    return Optional[str]  # noqa: UP045


def _parameters() -> list[inspect.Parameter]:
    params = []
    for name, field in SimOptions.model_fields.items():
        if name == "api_key":
            continue
        kind = _flag_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        if kind not in (int, float, bool, str):
            default = None if default in (None, []) else str(default) if not isinstance(default, list) else None
        flag = "--" + name.replace("_", "-")
        decls = [f"{flag}/--no-{name.replace('_', '-')}"] if kind is bool else [flag]
        opt = typer.Option(*decls, help=field.description, show_default=default is not None and default != [])
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, opt])
        )
    opt = typer.Option("--api-key-env", help="Require a Bearer key, read from this environment variable.")
    params.append(
        inspect.Parameter(
            "api_key_env", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[str | None, opt]
        )
    )
    return params


def sim_teacher(**flags: Any) -> None:
    api_key_env = flags.pop("api_key_env", None)
    values = {k: v for k, v in flags.items() if v is not None}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise UserError(f"sim-teacher: --api-key-env {api_key_env}: the environment variable is not set")
        values["api_key"] = key
    try:
        options = SimOptions(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "options"
        raise UserError(f"sim-teacher: {where}: {err['msg']}") from None
    from tracesynth.sim.runner import serve

    serve(options)


_SIGNATURE = inspect.Signature(_parameters())
sim_teacher.__signature__ = _SIGNATURE  # type: ignore[attr-defined]
sim_teacher.__annotations__ = {p.name: p.annotation for p in _SIGNATURE.parameters.values()}


def register(app: typer.Typer) -> None:
    """Add the ``sim-teacher`` command to the tracesynth CLI."""
    app.command("sim-teacher", help=HELP)(sim_teacher)
