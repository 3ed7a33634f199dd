"""The documentation stays a front door and a reference that hold together (issue 18).

Pure and fast: reads README.md and docs/*.md, imports the click group, opens no socket.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_BYTES = 12_000

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, …
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> str:
    """The text without code blocks or inline code, where a link is only an example."""
    return _CODE.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _links(page: Path) -> list[str]:
    return [m.group(1) for m in _LINK.finditer(_prose(page.read_text(encoding="utf-8")))]


def test_readme_is_a_front_door_of_at_most_12000_bytes() -> None:
    size = len(README.read_bytes())
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; move reference material into docs/"


def test_the_reference_has_at_least_six_pages() -> None:
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert len(pages) >= 6, pages


def test_the_link_parser_finds_what_it_should() -> None:
    page = "[a](docs/x.md) ![img](i.png) [ext](https://e.org) `[not](code.md)`\n```\n[no](n.md)\n```\n"
    found = [m.group(1) for m in _LINK.finditer(_prose(page))]
    assert found == ["docs/x.md", "i.png", "https://e.org"]
    assert _slug("Ray across hosts") == "ray-across-hosts"
    assert _slug("`loadtest mock` flags") == "loadtest-mock-flags"


def test_every_relative_link_resolves() -> None:
    broken: list[str] = []
    checked = 0
    for page in _pages():
        for target in _links(page):
            if _EXTERNAL.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            checked += 1
            where = f"{page.relative_to(ROOT)}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md":
                slugs = {_slug(h) for h in _HEADING.findall(_FENCE.sub("", dest.read_text(encoding="utf-8")))}
                if anchor.lower() not in slugs:
                    broken.append(f"{where} (no heading for #{anchor})")
    assert checked >= 10, f"only {checked} relative links found: is the parser right?"
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_links_every_docs_page() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _links(README) if not _EXTERNAL.match(t)}
    missing = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_the_readme_gives_the_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    assert "scripts/test.sh" in text
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test.sh" in ci  # the README's command is the one CI runs


def _command_table_rows() -> list[str]:
    """The first cell of every row of the table under the README's "Commands" heading."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Commands\s*$(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, "README.md has no '## Commands' section"
    rows = [line for line in section.group(1).splitlines() if line.startswith("|")]
    return [re.split(r"(?<!\\)\|", row)[1] for row in rows[2:]]  # after the header and its rule


def test_every_command_is_in_the_readme_command_table() -> None:
    from loadtest.cli.main import cli

    cells = _command_table_rows()
    names = sorted(cli.commands)
    assert names, "the CLI group has no commands"
    missing = [n for n in names if not any(re.search(rf"`loadtest {re.escape(n)}\b", c) for c in cells)]
    assert not missing, f"commands missing from the README's command table: {missing}"
    assert len(cells) == len(names), f"one row per command: {len(cells)} rows for {names}"
