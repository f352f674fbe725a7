"""`/docs`, the Swagger UI, served entirely by this server so that it works without internet
(behind a firewall, on an air-gapped machine). FastAPI's own page loads Swagger UI from a CDN.

The assets come from the pinned `fastapi-offline` package, which ships Swagger UI 5's
`swagger-ui-bundle.js`, `swagger-ui.css` and a favicon (Swagger UI 5 is the first to read
OpenAPI 3.1, which FastAPI writes); nothing of it is copied into this repository.
"""

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
SWAGGER_UI_ASSETS = Path(str(files("fastapi_offline") / "static"))

SWAGGER_UI_PARAMETERS = {
    # Swagger UI would otherwise send the document's address to validator.swagger.io for
    # a badge: an outside request from a self-hosted service's docs.
    "validatorUrl": None,
}


def install_docs(app: FastAPI, *, title: str, openapi_url: str) -> None:
    """Serve the Swagger UI page at /docs and its assets under /docs/assets."""
    app.mount(ASSETS_PATH, StaticFiles(directory=SWAGGER_UI_ASSETS), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
