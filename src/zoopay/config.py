import enum
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from zoopay.db.engine import Timeouts


class HttpServer(enum.StrEnum):
    UVICORN = "uvicorn"
    GRANIAN = "granian"


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
    log_level: str = "info"
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


@lru_cache
def get_settings() -> Settings:
    return Settings()
