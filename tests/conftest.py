"""Shared pytest set-up.

Hypothesis runs derandomised (the same examples every run, no example database), so the suite gives
the same verdict on every machine and in CI; set HYPOTHESIS_PROFILE=explore to search with fresh
random examples while developing. ``one_torch_thread`` is for tests that train small networks.
"""

import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture
def one_torch_thread():
    """Small nets on a shared 2-core machine: one intra-op thread avoids spin contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
