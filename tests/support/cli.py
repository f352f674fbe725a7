"""The `zoopay` command, run from a test on the run's database."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ZOOPAY = str(Path(sys.executable).with_name("zoopay"))


def zoopay_json(database_url: str, *args: str) -> dict[str, Any]:
    """Run a command that must succeed; its stdout is one JSON object."""
    env = {**os.environ, "ZOOPAY_DATABASE_URL": database_url}
    done = subprocess.run([ZOOPAY, *args], capture_output=True, text=True, env=env, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result
