import enum
import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from zoopay.billing.dunning import (
    DEFAULT_DUNNING_DAYS,
    BadSchedule,
    check_schedule,
    parse_schedule,
)
from zoopay.db.engine import Timeouts


class HttpServer(enum.StrEnum):
    UVICORN = "uvicorn"
    GRANIAN = "granian"


class ProcessorKind(enum.StrEnum):
    """Who holds cards and moves money (zoopay.processors.processor_from_settings)."""

    # Inside zoopay, in its own tables, with Stripe's test cards: needs no account or network.
    EMBEDDED = "embedded"
    # Stripe, through its official SDK (zoopay.processors.stripe): needs ZOOPAY_STRIPE_API_KEY.
    STRIPE = "stripe"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZOOPAY_")

    database_url: str = "sqlite:///zoopay.db"
    host: str = "127.0.0.1"
    port: int = 8080
    # A JSON file that replaces the shipped plan catalog.
    catalog: Path | None = None
    # The staff account created, with a printed token, on the first start.
    bootstrap_staff_email: str = "staff@zoopay.local"
    max_body_bytes: int = 1024 * 1024
    # The levels both servers (uvicorn, granian) take: another is refused at start-up, not
    # left to crash the server as it configures its logging.
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = False
    workers: int = 1
    server: HttpServer = HttpServer.UVICORN
    # How long to wait on the database before answering 503, in seconds.
    db_connect_timeout: float = Field(default=Timeouts.connect, gt=0)
    db_statement_timeout: float = Field(default=Timeouts.statement, gt=0)
    db_pool_timeout: float = Field(default=Timeouts.pool, gt=0)
    sqlite_lock_timeout: float = Field(default=Timeouts.sqlite_lock, gt=0)
    # Reports waiting for the group commit; more get 503 with Retry-After.
    report_queue_limit: int = Field(default=2000, gt=0)
    # Who holds cards and takes money: `embedded` (default) needs nothing else.
    processor: ProcessorKind = ProcessorKind.EMBEDDED
    # Days after a charge first failed on which `zoopay billing run` retries it; after the
    # last, the invoice is uncollectible and the customer delinquent.
    dunning_days: Annotated[tuple[int, ...], NoDecode] = DEFAULT_DUNNING_DAYS

    @field_validator("dunning_days", mode="before")
    @classmethod
    def _parse_dunning_days(cls, value: Any) -> Any:
        try:
            if isinstance(value, str):
                return parse_schedule(value)
            return check_schedule(list(value))
        except BadSchedule as exc:
            raise ValueError(str(exc)) from None

    # The `stripe` processor: a secret key (sk_...), a test server in place of Stripe's API
    # (localstripe: http://127.0.0.1:8420), and the signing secret of the webhook endpoint
    # (whsec_...) that POST /processor/stripe/webhook checks. Secrets never appear in a repr.
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr | None = None
    # The publishable key (pk_...) the console's card form gives Stripe.js (Stripe Elements):
    # public by design, it can only tokenize cards and confirm intents by their client secret.
    stripe_publishable_key: str | None = Field(default=None, pattern=r"^pk_[A-Za-z0-9_]{1,200}$")

    @model_validator(mode="after")
    def _stripe_has_a_key(self) -> "Settings":
        if self.processor == ProcessorKind.STRIPE and not self.stripe_api_key:
            raise ValueError("ZOOPAY_PROCESSOR=stripe needs ZOOPAY_STRIPE_API_KEY")
        return self

    # Tax rates by ISO country code, as exact decimals: {"DE": "0.19"}. Empty: no tax.
    tax_rates: Annotated[dict[str, Decimal], NoDecode] = {}
    # Invoice numbers are this prefix, a dash and a sequence without gaps: ZP-000001.
    invoice_prefix: str = Field(default="ZP", pattern=r"^[A-Z0-9]{1,12}$")
    # The issuer printed on invoices.
    invoice_issuer: str = "zoopay"
    invoice_issuer_address: str = ""
    # Where people reach this server (scheme://host[:port]): the base of invoice links and
    # console sign-in links. Unset, an answer uses the request's own base URL, and
    # `zoopay console link` http://ZOOPAY_HOST:ZOOPAY_PORT.
    public_url: str | None = None

    @field_validator("tax_rates", mode="before")
    @classmethod
    def _parse_tax_rates(cls, value: Any) -> Any:
        # Parsed here with exact decimals: pydantic-settings' own JSON parsing makes floats.
        if isinstance(value, str):
            value = json.loads(value, parse_float=Decimal) if value.strip() else {}
        return value

    @field_validator("tax_rates")
    @classmethod
    def _check_tax_rates(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        for country, rate in rates.items():
            if len(country) != 2 or not country.isascii() or not country.isupper():
                raise ValueError(f"{country!r} is not a two-letter ISO country code such as DE")
            if not rate.is_finite() or rate < 0 or rate >= 1:
                raise ValueError(f"the tax rate of {country} must be at least 0 and below 1")
        return rates

    def timeouts(self) -> Timeouts:
        return Timeouts(
            self.db_connect_timeout,
            self.db_statement_timeout,
            self.db_pool_timeout,
            self.sqlite_lock_timeout,
        )

    def report_wait_seconds(self) -> float:
        """How long a report waits for its group commit before a 503: a checkout and one
        statement's worth, about what any other request can take."""
        return self.db_pool_timeout + self.db_statement_timeout

    # Origins whose pages may call the API from a browser (CORS): comma-separated or a JSON
    # list, `*` for any. None by default: no CORS header is ever sent.
    cors_origins: Annotated[list[str], NoDecode] = []

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        return [_origin(origin) for origin in origins]


def _origin(text: str) -> str:
    """An origin as a browser sends it in `Origin` (scheme://host[:port], lower case), or `*`;
    anything else (a path, a trailing slash) would silently never match, so it is refused."""
    if text == "*":
        return text
    parts = urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"{text!r} is not an origin such as https://app.example.com")
    port = parts.port  # a ValueError if it is not a port
    # Browsers leave the scheme's own port out of `Origin`.
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


@lru_cache
def get_settings() -> Settings:
    return Settings()
