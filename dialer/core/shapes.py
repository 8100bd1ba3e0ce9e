"""Request shapes: declared once as pydantic models, they check what a request holds and render to the
JSON Schema the OpenAPI document shows (dialer/api/openapi.py), so the two cannot drift.

A shape says *what* a request holds: types (strict: "5" is not 5, true is not 1), required fields,
enums, bounds, patterns, and whether unknown fields are refused. What a value *means* stays in core
beside it (a phone number's possibility, an IANA zone, a calling window's semantics, record planning).

Our own routes answer a refused shape with one reason, in the words they always used: a field says
its reason with `Reason(...)` in its `Annotated[...]` metadata, and a shape class says what to answer
for a body that is not an object (`not_an_object`) and for unknown fields (`unknown_fields`, a template
over `{names}`, `{allowed}` and `{fields}`). Vendor faces answer pydantic's own `{loc, msg, type}` list.
"""

from __future__ import annotations

import types
import typing
from typing import Any, ClassVar, Iterable

from pydantic import BaseModel, ConfigDict, ValidationError


class Reason:
    """What a field's refusal says: one message, or one per pydantic error type (`missing`,
    `list_type`, `too_short`...), and `null` for a null where a value is required."""

    def __init__(self, message: str, **by_type: str) -> None:
        self.message = message
        self.by_type = by_type

    def says(self, error_type: str, value: Any) -> str:
        if value is None and "null" in self.by_type:
            return self.by_type["null"]
        return self.by_type.get(error_type, self.message)


class Shape(BaseModel):
    """A request shape: strict types and unknown fields refused (a subclass may relax either)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    not_an_object: ClassVar[str] = "body must be a JSON object"
    unknown_fields: ClassVar[str] = "unknown fields: {names}"


class ShapeError(ValueError):
    """A value does not fit its shape: `reason`, our one-line answer; `errors`, pydantic's list."""

    def __init__(self, reason: str, errors: list[dict]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors


def check(shape: type[Shape], value: Any) -> Shape:
    """The value as its shape, or ShapeError naming the first problem as our routes word it."""
    try:
        return shape.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise ShapeError(reason(shape, errors), errors) from None


def reason(shape: type[Shape], errors: list[dict]) -> str:
    """The message for the first problem: the body itself, then unknown fields, then fields in order."""
    first = sorted(errors, key=lambda e: 0 if not e["loc"] else 1 if e["type"] == "extra_forbidden" else 2)[0]
    loc = first["loc"]
    if first["type"] == "extra_forbidden":
        owner = _shape_at(shape, loc[:-1]) or shape
        names = sorted(str(e["loc"][-1]) for e in errors
                       if e["type"] == "extra_forbidden" and e["loc"][:-1] == loc[:-1])
        return owner.unknown_fields.format(names=names, allowed=sorted(owner.model_fields),
                                           fields=list(owner.model_fields))
    said, current = None, shape
    for part in loc:
        if not isinstance(part, str) or current is None or part not in current.model_fields:
            continue  # a list index, or a union member's tag
        field = current.model_fields[part]
        said = next((m for m in field.metadata if isinstance(m, Reason)), said)
        current = _inner_shape(field.annotation)
    if said is not None:
        return said.says(first["type"], first.get("input"))
    if first["type"] == "model_type" and _shape_at(shape, loc) is not None:
        return (_shape_at(shape, loc) or shape).not_an_object
    if not loc:  # a rule of the whole body (a model validator): its own words
        return first["msg"]
    return f"{'.'.join(str(p) for p in loc)}: {first['msg']}"


def _shape_at(shape: type[Shape], loc: Iterable) -> type[Shape] | None:
    current: type[Shape] | None = shape
    for part in loc:
        if current is None:
            return None
        if isinstance(part, str) and part in current.model_fields:
            current = _inner_shape(current.model_fields[part].annotation)
    return current


def _inner_shape(annotation: Any) -> type[Shape] | None:
    """The shape a field holds, through Optional, unions, lists and Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, Shape):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return None
    for arg in typing.get_args(annotation):
        found = _inner_shape(arg)
        if found is not None:
            return found
    return None
