"""Shared pytest set-up.

Hypothesis runs derandomised (the same examples every run, no example database), so the suite gives
the same verdict on every machine and in CI; set HYPOTHESIS_PROFILE=explore to search with fresh
random examples while developing.
"""

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
