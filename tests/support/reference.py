"""The Zoo models the compatible endpoints must match, from the pinned kittycad 1.2.0 itself.

The client validates responses against these very models (unknown fields forbidden), so their
JSON Schemas are the contract; nothing outside the repository is read.
"""

from functools import cache
from typing import Any

import kittycad.models
from pydantic import BaseModel


@cache
def reference_schema(model: str) -> dict[str, Any]:
    """The JSON Schema of a kittycad 1.2.0 model, by its name (`CustomerBalance`, ...)."""
    found: type[BaseModel] = getattr(kittycad.models, model)
    return found.model_json_schema()


def reference_fields(model: str) -> set[str]:
    return set(reference_schema(model)["properties"])
