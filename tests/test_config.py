"""The ZOOPAY_* settings: a wrong one stops every command at once, naming the variable and what
it must be, with no traceback and never the value given (it may be a secret)."""

import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.support.cli import CLI_LIMIT_SECONDS, ZOOPAY, zoopay_env
from zoopay.config import Settings


def test_the_log_level_is_one_both_servers_take() -> None:
    assert Settings(log_level="debug").log_level == "debug"
    with pytest.raises(ValidationError, match="log_level"):
        Settings(log_level="verbose")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variables", "command", "said"),
    [
        (
            {"ZOOPAY_LOG_LEVEL": "verbose"},
            ["serve", "--port", "1"],
            "error: ZOOPAY_LOG_LEVEL: Input should be 'critical', 'error', 'warning', 'info'"
            " or 'debug'",
        ),
        (
            {"ZOOPAY_DUNNING_DAYS": "1,x"},
            ["billing", "run"],
            "error: ZOOPAY_DUNNING_DAYS: Value error, 'x' is not a whole number of days",
        ),
        (
            {"ZOOPAY_PROCESSOR": "stripe"},
            ["users", "create", "ada@example.com"],
            "error: Value error, ZOOPAY_PROCESSOR=stripe needs ZOOPAY_STRIPE_API_KEY",
        ),
        (
            {"ZOOPAY_STRIPE_PUBLISHABLE_KEY": "sk_live_not_for_a_log"},
            ["db", "upgrade"],
            "error: ZOOPAY_STRIPE_PUBLISHABLE_KEY: String should match pattern",
        ),
    ],
    ids=["log-level", "dunning-days", "stripe-without-key", "secret-in-a-public-field"],
)
def test_a_wrong_setting_stops_the_command_before_it_does_anything(
    tmp_path: Path, variables: dict[str, str], command: list[str], said: str
) -> None:
    database = tmp_path / "zoopay.db"
    result = subprocess.run(
        [ZOOPAY, *command],
        env=zoopay_env(f"sqlite:///{database}", **variables),
        capture_output=True,
        text=True,
        timeout=CLI_LIMIT_SECONDS,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    assert "not_for_a_log" not in result.stderr
    assert not database.exists()
