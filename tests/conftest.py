from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.fixtures_server"]

# Hypothesis' deadline (200 ms per example) and its too_slow health check
# time the tests by the wall clock: on a loaded 2-core machine a run failed
# with "only generated 7 valid inputs after 1.06 seconds". Tests here never
# assert on speed, so neither may hypothesis. Loaded before any test module
# is imported, so every @settings(...) inherits it.
settings.register_profile(
    "hintpool", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("hintpool")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return str(request.param)
