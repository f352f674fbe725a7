"""/docs is served whole by zoopay: the page names only its own assets, and each answers with
its content. (tests/e2e/test_browser.py renders it in Chromium with the network cut off.)"""

import re
from html.parser import HTMLParser

import httpx
import pytest

from tests.support.errors import assert_error

ASSET_TYPES = {
    "/docs/assets/swagger-ui-bundle.js": "text/javascript",
    "/docs/assets/swagger-ui.css": "text/css",
    "/docs/assets/favicon.png": "image/png",
}


class _References(HTMLParser):
    """Every address the page makes the browser load: src= and href= of any element."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


async def test_the_docs_page_loads_only_its_own_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert sorted(references(page.text)) == sorted(ASSET_TYPES)
    # Nothing else the page could reach for: no absolute or protocol-relative address at all.
    assert not re.search(r"https?:|//[a-z]", page.text, re.IGNORECASE), page.text
    assert "url: '/openapi.json'" in page.text
    # Swagger UI's default would send the document's address to validator.swagger.io.
    assert '"validatorUrl": null' in page.text


@pytest.mark.parametrize(("path", "content_type"), ASSET_TYPES.items())
async def test_each_asset_answers_with_its_content(
    client: httpx.AsyncClient, path: str, content_type: str
) -> None:
    asset = await client.get(path)

    assert asset.status_code == 200
    assert asset.headers["content-type"].split(";")[0] == content_type
    assert int(asset.headers["content-length"]) == len(asset.content) > 1000


async def test_the_script_is_swagger_ui_5(client: httpx.AsyncClient) -> None:
    """Swagger UI 4 cannot read OpenAPI 3.1, which FastAPI writes: the page would be an error."""
    script = (await client.get("/docs/assets/swagger-ui-bundle.js")).text
    document = (await client.get("/openapi.json")).json()

    assert document["openapi"].startswith("3.1")
    assert "SwaggerUIBundle" in script
    assert re.search(r'"5\.\d+\.\d+"', script)


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/nothing.js",
        "/docs/assets/../../app.py",
        "/docs/assets/..%2F..%2Fapp.py",
        "/docs/assets/%2e%2e/%2e%2e/fastapi_offline/core.py",
    ],
)
async def test_nothing_but_the_assets_is_served(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404)


async def test_the_assets_are_read_only(client: httpx.AsyncClient) -> None:
    refused = await client.put("/docs/assets/swagger-ui.css", content=b"body{}")

    assert_error(refused, 405, "method_not_allowed")
    assert refused.headers["allow"] == "GET, HEAD"
    assert (await client.get("/docs/assets/swagger-ui.css")).content != b"body{}"
