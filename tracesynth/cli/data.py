"""``tracesynth data list``: the problem sets shipped with tracesynth, verified now."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="The problem sets shipped with tracesynth.", no_args_is_help=True)


@data_app.command("list")
def data_list() -> None:
    """Print every shipped set: name, split, rows, role, licence and sha256 (verified now)."""
    from tracesynth.errors import DataError
    from tracesynth.sources.builtin import registry, verified_path

    rows = [("name", "split", "rows", "role", "licence", "sha256", "check")]
    bad: list[str] = []
    for d in registry():
        try:
            verified_path(d)
            check = "ok"
        except DataError as exc:
            check = "MISMATCH"
            bad.append(str(exc))
        rows.append((d.name, d.split, str(d.rows), d.role, d.licence, d.sha256, check))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if bad:
        raise DataError(bad[0] + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
