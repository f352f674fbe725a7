"""Builds the FastAPI application."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from zoopay.accounts.cache import TokenCache
from zoopay.accounts.routes import api_tokens_router, service_accounts_router
from zoopay.accounts.routes import router as accounts_router
from zoopay.api.cors import CorsHeaders, CorsPreflight
from zoopay.api.deps import system_clock
from zoopay.api.docs import install_docs
from zoopay.api.errors import install_error_handlers
from zoopay.api.health import router as health_router
from zoopay.api.middleware import RequestContextMiddleware
from zoopay.api.openapi import declare_errors, declare_hot_routes
from zoopay.billing.routes import HOT_ROUTES as billing_hot_routes
from zoopay.billing.routes import router as billing_router
from zoopay.billing.upgrades import ChangeTerms, repair_on_start
from zoopay.catalog.routes import router as catalog_router
from zoopay.catalog.service import Catalog, load_catalog
from zoopay.config import Settings, get_settings
from zoopay.console.invoices import router as console_invoices_router
from zoopay.console.payments import router as console_payments_router
from zoopay.console.routes import api_router as console_api_router
from zoopay.console.routes import router as console_router
from zoopay.console.routes import staff_router as console_staff_router
from zoopay.console.web import redact_access_log
from zoopay.db.engine import create_engine
from zoopay.invoicing.routes import links_router as invoice_links_router
from zoopay.invoicing.routes import router as invoicing_router
from zoopay.invoicing.service import reconcile_on_start
from zoopay.ledger.routes import router as ledger_router
from zoopay.metering.batcher import CallRecorder
from zoopay.metering.routes import HOT_ROUTES as metering_hot_routes
from zoopay.metering.routes import router as metering_router
from zoopay.payments.routes import router as payments_router
from zoopay.processors import processor_from_settings
from zoopay.processors.routes import router as processor_router
from zoopay.processors.stripe import StripeProcessor
from zoopay.processors.stripe_routes import router as stripe_webhook_router
from zoopay.subscriptions.routes import orgs_router as subscriptions_orgs_router
from zoopay.subscriptions.routes import router as subscriptions_router
from zoopay.subscriptions.routes import users_router as subscriptions_users_router

DESCRIPTION = """\
Payments and API credits, wire-compatible with the Payments part of Zoo's API:
the official `kittycad` SDK works against it unchanged. Amounts are US dollars, sent as
decimal strings and accepted as JSON numbers or decimal strings (at most 6 decimals).
"""
OPENAPI_URL = "/openapi.json"


def create_app(
    settings: Settings, *, engine: AsyncEngine | None = None, catalog: Catalog | None = None
) -> FastAPI:
    owns_engine = engine is None
    app_engine = engine or create_engine(settings.database_url, timeouts=settings.timeouts())

    app_catalog = catalog or load_catalog(settings.catalog)
    recorder = CallRecorder(
        app_engine,
        app_catalog,
        queue_limit=settings.report_queue_limit,
        wait_seconds=settings.report_wait_seconds(),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Charges and refunds a crash left between the processor's answer and our commit.
        await reconcile_on_start(app_engine, app.state.processor, app.state.clock())
        await repair_on_start(app_engine, app.state.processor, app.state.clock())
        yield
        await recorder.close()
        if isinstance(app.state.processor, StripeProcessor):
            await app.state.processor.aclose()
        if owns_engine:
            await app_engine.dispose()

    app = FastAPI(
        title="zoopay",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        # /docs is ours (install_docs): FastAPI's page loads Swagger UI from a CDN.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # No redirect from /path/ to /path: it would be built from the request's Host header.
        redirect_slashes=False,
        # FastAPI's built-in telemetry looks up OpenTelemetry providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Operation ids are the route functions' names: Zoo's, for the compatible endpoints, so
        # that generated clients get the kittycad SDK's method names.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.engine = app_engine
    app.state.settings = settings
    app.state.clock = system_clock
    # The processor reads the app's clock on every call, so that tests moving it move both.
    app.state.processor = processor_from_settings(
        settings, engine=app_engine, clock=lambda: app.state.clock()
    )
    # POST /processor/stripe/webhook checks each delivery's signature with it (None: refused).
    secret = settings.stripe_webhook_secret
    app.state.stripe_webhook_secret = secret.get_secret_value() if secret else None
    app.state.stripe_publishable_key = settings.stripe_publishable_key
    app.state.catalog = app_catalog
    # What a paid plan change needs from the settings (zoopay.billing.upgrades).
    app.state.change_terms = ChangeTerms(settings.tax_rates, settings.invoice_prefix)
    app.state.token_cache = TokenCache(app_engine)
    app.state.call_recorder = recorder
    app.state.public_url = settings.public_url
    routers = (
        billing_router,
        subscriptions_router,
        subscriptions_users_router,
        subscriptions_orgs_router,
        accounts_router,
        api_tokens_router,
        service_accounts_router,
        catalog_router,
        metering_router,
        ledger_router,
        invoicing_router,
        invoice_links_router,
        payments_router,
        processor_router,
        health_router,
        stripe_webhook_router,
        console_api_router,
    )
    hot_routes = [*metering_hot_routes, *billing_hot_routes]
    # First of all routes, the busiest first: the router tries them in order, and the other
    # methods of a hot path (GET /api-calls) still reach their FastAPI routes.
    app.router.routes[:0] = hot_routes
    for router in routers:
        app.include_router(router)
    # The console's pages: outside the OpenAPI document (their sign-in-link API is in it).
    app.include_router(console_staff_router)
    app.include_router(console_payments_router)
    app.include_router(console_invoices_router)
    app.include_router(console_router)
    install_docs(app, title=app.title, openapi_url=OPENAPI_URL)
    install_error_handlers(app)
    if settings.cors_origins:
        # Ahead of the router, so that a preflight is answered on every path; inside the
        # request context, so that its answer has a request id like every other.
        app.add_middleware(CorsPreflight, origins=settings.cors_origins)
    # Every response, hot or not, carries the request id.
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        # Outermost: the 500 and 503 that the request context answers itself get
        # Access-Control-Allow-Origin too, so a browser front-end can read them.
        app.add_middleware(CorsHeaders, origins=settings.cors_origins)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = [route for router in routers for route in router.routes]
            document = declare_errors(FastAPI.openapi(app), routes)
            app.openapi_schema = declare_hot_routes(document, hot_routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/", include_in_schema=False)
    async def openapi_document() -> JSONResponse:
        """The OpenAPI document of this server."""
        document: dict[str, Any] = app.openapi()
        return JSONResponse(document)

    return app


def app_from_environment() -> FastAPI:
    """The app as `zoopay serve` runs it in each worker process: settings from ZOOPAY_*."""
    app = create_app(get_settings())
    redact_access_log()
    _quiet_garbage_collector()
    return app


_GC_YOUNG_THRESHOLD = 20_000  # allocations between collections of new objects (default 700)


def _quiet_garbage_collector() -> None:
    # Requests make short-lived objects by the thousand: collect young ones less often, and
    # never rescan what was loaded at start (fewer, shorter pauses; bench/RESULTS.md).
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, 20, 20)
