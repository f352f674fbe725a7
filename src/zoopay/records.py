"""From domain records to wire models: the fields both name alike are copied, not restated."""

import dataclasses
from typing import Any

from pydantic import BaseModel


def same_named(record: Any, model: type[BaseModel]) -> dict[str, Any]:
    """The fields of `model` that the dataclass `record` holds under the same name, for a wire
    model's `of` to pass on beside the fields it converts (amounts, renamed fields)."""
    held = {field.name for field in dataclasses.fields(record)}
    return {name: getattr(record, name) for name in model.model_fields if name in held}
