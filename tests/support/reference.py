"""The Zoo models the compatible endpoints must match, from the pinned kittycad 1.2.0 itself.

The client validates responses against these very models (unknown fields forbidden), so their
JSON Schemas are the contract; nothing outside the repository is read.
"""

import re
from functools import cache
from pathlib import Path
from typing import Any

import kittycad
import kittycad.models
from pydantic import BaseModel


@cache
def reference_schema(model: str) -> dict[str, Any]:
    """The JSON Schema of a kittycad 1.2.0 model, by its name (`CustomerBalance`, ...)."""
    found: type[BaseModel] = getattr(kittycad.models, model)
    return found.model_json_schema()


def reference_fields(model: str) -> set[str]:
    return set(reference_schema(model)["properties"])


@cache
def sdk_operations() -> dict[tuple[str, str], tuple[str, str]]:
    """(method, path) -> (tag, method name) of every operation kittycad 1.2.0's sync client has.

    Read from the client's source: each method builds its URL from the path and sends with
    `_client.<method>`; its class is its tag (`ApiCallsAPI` -> `api-calls`). Paged listings are
    generated as `_fetch_page_<name>` behind the public `<name>`.
    """
    source = Path(kittycad.__file__).read_text()
    found: dict[tuple[str, str], tuple[str, str]] = {}
    tag = name = path = ""
    for line in source.splitlines():
        if match := re.match(r"class (\w+)API\b", line):
            tag = re.sub(r"(?<!^)(?=[A-Z])", "-", match.group(1)).lower()
        elif match := re.match(r"    def (\w+)\(", line):
            name = match.group(1).removeprefix("_fetch_page_")
        elif match := re.search(r'url = "\{\}(/[^"]*)"\.format', line):
            path = match.group(1)
        elif (match := re.search(r"= _client\.(get|post|put|delete|patch)\(", line)) and tag:
            found[(match.group(1).upper(), path)] = (tag, name)
    return found
