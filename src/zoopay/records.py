"""Between domain records, rows and wire models: the fields that name alike are copied, not
restated."""

import dataclasses
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Record = TypeVar("Record", bound="DataclassInstance")


def same_named(record: Any, model: type[BaseModel]) -> dict[str, Any]:
    """The fields of `model` that the dataclass `record` holds under the same name, for a wire
    model's `of` to pass on beside the fields it converts (amounts, renamed fields)."""
    held = {field.name for field in dataclasses.fields(record)}
    return {name: getattr(record, name) for name in model.model_fields if name in held}


def record_of(record: type[Record], row: Mapping[str, Any], /, **converted: Any) -> Record:
    """A `record` (a dataclass) from a row whose columns name its fields: each field the column
    of its name, but those in `converted`, given as they are (enums, composites, what the row
    does not hold)."""
    copied = {name: row[name] for name in _field_names(record) if name not in converted}
    return record(**copied, **converted)


@cache
def _field_names(record: type["DataclassInstance"]) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(record))
