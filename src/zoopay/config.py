import enum
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


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


@lru_cache
def get_settings() -> Settings:
    return Settings()
