"""Reading YAML input: config files and `--set` values, within limits, into plain dicts.

Input limits of every YAML file memlaw reads (trial, sweep and cluster files, `--set` values),
checked before or while parsing so that no input can make validation hang, recurse or balloon. A
real config file is a few KB, a few levels deep, and repeats nothing by reference. The plain dicts
then go through trainables/schema.py's strict conversion into frozen dataclasses.
"""

from __future__ import annotations

from typing import Any

from trainables.schema import ConfigError, Problem, clip, set_dotted, short_repr

#: Largest config file, checked before it is read.
MAX_FILE_BYTES = 1 << 20
#: Deepest nesting of mappings and lists (the composer recurses once per level).
MAX_DEPTH = 50


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], parsed value); values are parsed as YAML scalars."""
    import yaml

    if "=" not in text:
        raise ConfigError([Problem("--set", f"expected key=value, got {short_repr(text)}")])
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError([Problem("--set", f"empty key in {short_repr(text)}")])
    try:
        value = load_yaml_text(raw, "--set") if raw.strip() else None
    except InputLimit as err:
        raise ConfigError([Problem("--set", f"{key}: {err}")]) from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--set a.b=v` overrides to a nested dict (copying the mappings it touches)."""
    out = dict(data)
    for text in overrides:  # one at a time: a later override of a whole section replaces an earlier field
        keys, value = parse_override(text)
        out = set_dotted(out, {".".join(keys): value})
    return out


class InputLimit(Exception):
    """A config file past one of the input limits (size, depth, aliases); the message names it."""


def load_yaml_mapping(path: str) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file and the YAML position.

    Input limits, each refused with a message naming the file and the limit: more than
    MAX_FILE_BYTES (checked before reading), nesting deeper than MAX_DEPTH, and any YAML alias
    (`*name`) or anchor (`&name`): an alias shares a node, and nine lines of aliases to aliases
    ("billion laughs") stand for a billion values that validation would walk. Without aliases
    there are no `<<: *anchor` merges either; an inline `<<: {...}` still merges."""
    import os

    import yaml

    if not os.path.isfile(path):
        raise ConfigError([Problem("", f"{path}: no such file")])
    size_problem = Problem("", f"{path}: {os.path.getsize(path)} bytes, over the limit of a config file "
                               f"({MAX_FILE_BYTES} bytes, 1 MiB)")
    if os.path.getsize(path) > MAX_FILE_BYTES:
        raise ConfigError([size_problem])
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)  # the file may have grown since it was measured
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError([size_problem])
        data = load_yaml_text(raw.decode("utf-8"), path)
    except UnicodeDecodeError:
        raise ConfigError([Problem("", f"{path}: not a text file (YAML expected)")]) from None
    except InputLimit as err:
        raise ConfigError([Problem("", f"{path}: {err}")]) from None
    except yaml.YAMLError as err:
        raise ConfigError([Problem("", f"{path}: YAML syntax error: {clip(str(err), 1000)}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem("", f"{path}: must hold a YAML mapping at the top, got {type(data).__name__}")])
    return data


def load_yaml_text(text: str, name: str) -> Any:
    """One YAML document from `text` (`name` for error positions), within the input limits.

    Two passes: the parser's events alone first (no nodes are built: a bomb is refused at its first
    anchor, deep nesting at level MAX_DEPTH + 1), then the strict loader. libyaml's parser when
    PyYAML has it (a 1 MiB file in about a second; the pure-Python parser takes ten), the same
    errors either way. Raises InputLimit or yaml.YAMLError."""
    import io

    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _check_events(yaml.parse(_named(io.StringIO(text), name), Loader=base))
    except yaml.YAMLError as err:  # libyaml's own cap (1000 flow levels), met while it scans ahead
        if "maximum nesting depth" in str(err):
            mark = getattr(err, "problem_mark", None)
            where = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise InputLimit(f"nested deeper than the limit of {MAX_DEPTH} levels{where}") from None
        raise
    return yaml.load(_named(io.StringIO(text), name), Loader=_strict_loader(base))  # noqa: S506 (SafeLoader kin)


def _check_events(events) -> None:
    """InputLimit at the first anchor or alias, or past MAX_DEPTH levels of mappings and lists."""
    import yaml

    depth = 0
    for event in events:
        line = event.start_mark.line + 1 if event.start_mark else "?"
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            sign, what = ("*", "alias") if isinstance(event, yaml.AliasEvent) else ("&", "anchor")
            raise InputLimit(f"YAML {what} {sign}{clip(str(event.anchor), 40)} at line {line}: anchors and aliases "
                             "are not allowed in a config file (they can expand without bound); write the values out")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputLimit(f"nested deeper than the limit of {MAX_DEPTH} levels (at line {line})")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _named(stream, name: str):
    stream.name = name  # PyYAML and libyaml quote a stream's name in error positions
    return stream


def _strict_loader(base=None):
    """PyYAML's SafeLoader (or libyaml's CSafeLoader), except that a key repeated in one mapping is an
    error, not a silent override. load_yaml_text checks the input limits before it runs."""
    import yaml

    class StrictLoader(base or yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: {...}` merges may be overridden by explicit keys, as YAML intends
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {short_repr(key)} (each key may appear once)", key_node.start_mark)
            return super().construct_mapping(node, deep)

    return StrictLoader
