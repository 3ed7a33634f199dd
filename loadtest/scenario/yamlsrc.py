"""YAML text → (data, node tree), and the node tree → ``FILE:LINE: key.path``.

The document is composed once: the node tree gives duplicate keys (refused, with both lines)
and the line of any ``loc`` a pydantic error reports; the data is constructed from that tree.

Internal to :mod:`loadtest.scenario`. No I/O: the loader passes the text in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from loadtest.errors import ScenarioError

__all__ = ["locate", "parse_yaml"]


def locate(root: yaml.Node | None, loc: Sequence[str | int]) -> tuple[int, str]:
    """(1-based line, display path) of ``loc`` in the YAML node tree, as deep as it goes.

    Elements the tree does not have (a missing key, a union tag) are skipped; a missing last
    key is still named in the path.
    """
    node = root
    line = root.start_mark.line + 1 if root is not None else 1
    parts: list[str] = []
    for i, el in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            found = None
            for key, value in node.value:  # the last wins, as in construction (merge keys)
                if isinstance(key, yaml.ScalarNode) and key.value == str(el):
                    found = (key, value)
            if found is not None:
                parts.append(f".{el}")
                line, node = found[0].start_mark.line + 1, found[1]
            elif i == len(loc) - 1 and isinstance(el, str) and not el.startswith("<"):
                parts.append(f".{el}")
        elif isinstance(node, yaml.SequenceNode) and isinstance(el, int) and 0 <= el < len(node.value):
            node = node.value[el]
            parts.append(f"[{el}]")
            line = node.start_mark.line + 1
    return line, "".join(parts).lstrip(".")


def _check_duplicates(root: yaml.Node, file: str) -> None:
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    here = f"{path}.{key.value}".lstrip(".")
                    if key.value in first:
                        raise ScenarioError(
                            f"duplicate key {key.value!r} (first at line {first[key.value]})",
                            where=f"{file}:{line}: {here}",
                        )
                    first[key.value] = line
                    stack.append((value, here))
                else:
                    stack.append((value, path))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))


def parse_yaml(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    """(data, node tree) of a one-document YAML text; ScenarioError with the YAML's position."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # the reader refuses control characters right here
        node = loader.get_single_node()
        if node is not None:
            _check_duplicates(node, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        problem = exc.problem or exc.context or "not valid YAML"
        raise ScenarioError(f"not valid YAML: {problem}", where=where) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character
        code = char if isinstance(char, int) else ord(str(char)[:1] or "?")
        raise ScenarioError(
            f"not valid YAML: character U+{code:04X} is not allowed", where=f"{file}:{line}"
        ) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML: {exc}", where=file) from None
    except RecursionError:  # PyYAML composes recursively
        raise ScenarioError("the YAML is nested too deeply", where=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, node
