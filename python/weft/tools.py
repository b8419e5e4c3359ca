"""Python callables as weft tools: a JSON Schema from type hints and docstring."""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any, Callable, Dict, List, Tuple

_SIMPLE = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dict: {"type": "object"},
    list: {"type": "array"},
    type(None): {"type": "null"},
}


def _schema_of(hint: Any) -> Dict[str, Any]:
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    if hint in _SIMPLE:
        return dict(_SIMPLE[hint])
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (list, List, tuple, Tuple, set, frozenset):
        schema: Dict[str, Any] = {"type": "array"}
        if args and args[0] is not Ellipsis:
            schema["items"] = _schema_of(args[0])
        return schema
    if origin in (dict, Dict):
        return {"type": "object"}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        options = [_schema_of(a) for a in args]
        return {"anyOf": options}
    return {}


def _param_docs(doc: str) -> Dict[str, str]:
    """Parameter descriptions from a Google (``Args:``), NumPy or Sphinx
    (``:param x:``) style docstring."""
    out: Dict[str, str] = {}
    for m in re.finditer(r":param\s+(\w+):\s*(.+)", doc):
        out[m.group(1)] = m.group(2).strip()
    section = re.search(r"(?:Args|Arguments|Parameters)\s*:?\s*\n(?:-+\n)?(.*?)(?:\n\s*\n|\Z)", doc, re.S)
    if section:
        for line in section.group(1).splitlines():
            m = re.match(r"\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)", line)
            if m and m.group(1) not in out:
                out[m.group(1)] = m.group(2).strip()
    return out


def tool_spec(func: Callable[..., Any]) -> Tuple[str, str, Dict[str, Any], Callable[..., Any]]:
    """``(name, description, json_schema, func)`` for a function: its name,
    the first paragraph of its docstring, and an object schema with one
    property per parameter (typed from its hints, described from the
    docstring; parameters without a default are required)."""
    if not callable(func):
        raise TypeError(f"a tool must be callable, not {type(func).__name__}")
    name = getattr(func, "__name__", None)
    if not name or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ValueError(f"tool name {name!r} must be 1-64 letters, digits, '_' or '-'")
    doc = inspect.getdoc(func) or ""
    description = doc.split("\n\n", 1)[0].strip() or name
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: untyped
        hints = {}
    docs = _param_docs(doc)
    properties: Dict[str, Any] = {}
    required: List[str] = []
    for pname, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        prop = _schema_of(hints.get(pname, param.annotation))
        if pname in docs:
            prop["description"] = docs[pname]
        if param.default is inspect.Parameter.empty:
            required.append(pname)
        else:
            try:
                import json

                json.dumps(param.default)
                prop["default"] = param.default
            except (TypeError, ValueError):
                pass
        properties[pname] = prop
    schema: Dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return name, description, schema, func
