"""Reading YAML safely, with line numbers for syntax errors and duplicate keys refused."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from nas.errors import SpaceError
from proxies.atomic import write_bytes_atomic


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file with the safe loader; errors are `SpaceError`s naming the file and line."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(name, "", "no such file") from None
    except IsADirectoryError:
        raise SpaceError(name, "", "is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(name, "", f"cannot be read: {exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpaceError(name, "", f"{line}YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise SpaceError(name, "", f"YAML syntax error: {exc}") from None


def write_yaml_atomic(path: str | os.PathLike, data: Any, header: str = "") -> None:
    """Write YAML to a temporary file beside `path`, then rename it over: never half-written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    write_bytes_atomic(target, text.encode("utf-8"))
