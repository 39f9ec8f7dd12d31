import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


import pytest  # noqa: E402


@pytest.fixture
def hierarchies_dir() -> Path:
    """The bundled hierarchy files (hierarchies/*.yaml)."""
    return ROOT / "hierarchies"


# Hypothesis: a derandomized profile for CI (the same examples on every run, no database, no
# deadline on a shared runner), chosen when CI=true; elsewhere hypothesis's default.
import os  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
