"""Reading a recipe's YAML text safely: size and nesting checked before PyYAML parses it, aliases refused (an alias
bomb cannot expand), a key given twice refused (loaders keep the last in silence), and each key's line number for
the errors that name it."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import RtkError

MAX_BYTES, MAX_DEPTH, MAX_INDENT = 1 << 20, 32, 128
PLAIN = re.compile(r"[\w./@+-]+( [\w./@+-]+)*")      # text YAML may leave unquoted, if it resolves to a string
RESOLVER = yaml.resolver.Resolver()


def flow(value: Any) -> str:
    """A value as YAML's flow style writes it (`[a, b]`, `{key: 1}`, `true`, `null`, a date as written), for
    messages; a mapping's keys may be dates or true, which JSON cannot key by."""
    if isinstance(value, list):
        return "[" + ", ".join(map(flow, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):      # quoted where YAML would read it as something else ("null", "0.3", "a: b")
        plain = PLAIN.fullmatch(value) and RESOLVER.resolve(yaml.ScalarNode, value, (True, False)).endswith(":str")
        return value if plain else json.dumps(value)
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def refuse_deep(text: str, path: Path) -> None:
    """Refuse huge or deeply nested text up front: PyYAML's time grows with the square of the nesting depth."""
    if len(text) > MAX_BYTES:
        raise RtkError(f"{path}: {len(text)} characters is not a recipe (limit {MAX_BYTES}); check the file")
    depth = deepest = 0
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
        elif ch == "\n":
            quote = ""
    indent = max((len(line) - len(line.lstrip(" ")) for line in text.splitlines()), default=0)
    if deepest > MAX_DEPTH or indent > MAX_INDENT:
        raise RtkError(f"{path}: YAML nested too deeply; a recipe is a few levels of mappings")


def refuse_aliases(text: str, path: Path) -> None:
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                raise RtkError(f"{path}:{mark.line + 1}:{mark.column + 1}: YAML aliases (*name) are not allowed in "
                               "recipes; write the value out")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}:{mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RtkError(f"{path}:{where}: YAML syntax error: {problem}; fix the recipe") from None


def refuse_duplicates(node: yaml.Node | None, path: Path, prefix: tuple = ()) -> None:
    """A key given twice in one mapping is an error naming both lines: YAML loaders keep the last silently, so
    a gate written twice would vanish."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name, line = str(key.value), key.start_mark.line + 1
            if name in seen:
                dotted = ".".join(map(str, prefix + (name,)))
                raise RtkError(f"{path}:{line}: key {dotted!r} is given twice (lines {seen[name]} and {line}); "
                               "keep one")
            seen[name] = line
            refuse_duplicates(value, path, prefix + (name,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            refuse_duplicates(item, path, prefix + (i,))


def key_lines(node: yaml.Node, prefix: tuple = ()) -> dict[tuple, int]:
    """Map each key path in the YAML tree to its 1-based line number."""
    found: dict[tuple, int] = {prefix: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            found[prefix + (key.value,)] = key.start_mark.line + 1
            if key.tag.endswith((":null", ":bool")):     # also as errors name it: ~ as null, yes as true
                found[prefix + (flow(yaml.safe_load(key.value)),)] = key.start_mark.line + 1
            found.update({k: v for k, v in key_lines(value, prefix + (key.value,)).items() if k != prefix + (key.value,)})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found.update(key_lines(item, prefix + (i,)))
    return found
