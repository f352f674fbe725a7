"""The repository stands alone: a clone with nothing beside it passes the suite's fast part.

The tests that once read material from outside the repository (the Zoo model schemas, the seed
documents) are run in a fresh `git clone` of this repository's HEAD inside an empty temporary
directory, with the clone's own `src` first on the path. Only committed files travel.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST_PART = [
    "tests/api/test_wire_schemas.py",
    "tests/catalog/test_catalog.py",
    "tests/e2e/test_seeds.py",
    "tests/test_money.py",
]
LIMIT_SECONDS = 600


def test_a_lone_clone_passes_the_fast_part(tmp_path: Path) -> None:
    alone = tmp_path / "alone"
    alone.mkdir()
    clone = alone / "zoopay"
    git = shutil.which("git")
    assert git is not None, "git is needed to clone the repository"
    subprocess.run([git, "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    assert sorted(p.name for p in alone.iterdir()) == ["zoopay"]

    env = {**os.environ, "PYTHONPATH": str(clone / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FAST_PART],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=LIMIT_SECONDS,
        check=False,
    )
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    assert " passed" in result.stdout and " failed" not in result.stdout, tail
    # The clone's code ran, not this checkout's.
    probe = subprocess.run(
        [sys.executable, "-c", "import zoopay; print(zoopay.__file__)"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()).is_relative_to(clone), probe.stdout
