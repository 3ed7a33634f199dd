"""``loadtest new``: write a commented starter scenario, for a real proxy or (``--mock``) the
embedded mock. The templates are package data (``loadtest/cli/templates/*.yaml``), so an
installed ``loadtest`` has them without a checkout of the repository; they are the one source
of the starters (no copy lives in ``scenarios/``)."""

from __future__ import annotations

import shlex
from importlib import resources
from pathlib import Path

import click

from loadtest.errors import BadInput
from loadtest.rundir.outdir import prepare_output_file, write_atomic

__all__ = ["TEMPLATES", "new", "template_text"]

#: the starters by kind: (template file in loadtest/cli/templates, what the written file is)
TEMPLATES = {
    "proxy": ("proxy.yaml", "a starter scenario for a real proxy"),
    "mock": ("mock.yaml", "a starter scenario against the embedded mock"),
}


def template_text(kind: str) -> str:
    """The text of the starter ``kind`` ("proxy" or "mock"), as shipped in the package."""
    name, _ = TEMPLATES[kind]
    return (resources.files("loadtest.cli") / "templates" / name).read_text(encoding="utf-8")


@click.command()
@click.argument("file", type=click.Path())
@click.option("--mock", "against_mock", is_flag=True,
              help="Against the embedded mock (runs as it is: no proxy, no key).")
def new(file: str, against_mock: bool) -> int:
    """Write a commented starter scenario to FILE: for a real proxy (edit target.url), or with
    --mock against the embedded mock. Never overwrites a file (exit 2)."""
    kind = "mock" if against_mock else "proxy"
    path = Path(file)
    prepare_output_file(path, what="scenario")  # a directory, an unwritable place: exit 2 in one line
    if path.exists() or path.is_symlink():
        raise BadInput(f"{path}: already exists; loadtest new never overwrites a file "
                       "(give another name, or remove it first)")
    write_atomic(path, template_text(kind))
    command = f"loadtest run {shlex.quote(file)}"
    if kind == "mock":
        click.echo(f"wrote {file}: {TEMPLATES[kind][1]}; next: {command}")
    else:
        click.echo(f"wrote {file}: {TEMPLATES[kind][1]}; set target.url in it and export "
                   f"LOADTEST_API_KEY, then: {command}")
    return 0
