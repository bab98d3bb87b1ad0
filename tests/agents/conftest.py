import pytest
import torch as th


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small nets on a shared 2-core machine: one intra-op thread avoids spin contention."""
    before = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(before)
