"""Hypothesis fuzzing of the SIP parser and the Diameter decoder (hostile input, issue 11).

Two profiles: ``fuzz-ci`` (the default, 200 examples per property, what ``make test`` runs)
and ``nightly`` (``HYPOTHESIS_PROFILE=nightly``, 50 000 examples per property). Neither
has a deadline: time is bounded by the parsers' structural limits, which the tests check.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fuzz-ci",
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "nightly",
    max_examples=50_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: The settings every fuzz property uses: ``nightly`` when asked for, else ``fuzz-ci``.
FUZZ = settings.get_profile(
    "nightly" if os.environ.get("HYPOTHESIS_PROFILE") == "nightly" else "fuzz-ci"
)
