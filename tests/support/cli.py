"""The `zoopay` command, run from a test on the run's database."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ZOOPAY = str(Path(sys.executable).with_name("zoopay"))
# How long a command may take on a loaded machine before the test gives up on it.
CLI_LIMIT_SECONDS = 120


def zoopay_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a `zoopay` process: none of the suite's own ZOOPAY_* variables, the
    run's database, and `settings` (ZOOPAY_CATALOG=..., by their names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOOPAY_")}
    return {**env, "ZOOPAY_DATABASE_URL": database_url, **settings}


def zoopay_json(database_url: str, *args: str) -> dict[str, Any]:
    """Run a command that must succeed; its stdout is one JSON object."""
    env = zoopay_env(database_url)
    done = subprocess.run([ZOOPAY, *args], capture_output=True, text=True, env=env, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result
