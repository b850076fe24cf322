"""Test-suite settings. Builders and fakes live in :mod:`display.testing`."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Property tests run beside subprocess-heavy tests on two cores: timing is not what they check.
# In CI the examples are derandomized, so a run is repeatable and never flaky by chance.
settings.register_profile("default", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True,
                          print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
