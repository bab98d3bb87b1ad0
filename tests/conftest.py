"""Shared pytest set-up.

Hypothesis runs derandomised (the same examples every run, no example database), so the suite gives
the same verdict on every machine and in CI; set HYPOTHESIS_PROFILE=explore to search with fresh
random examples while developing. ``one_torch_thread`` is for tests that train small networks;
``load_file`` / ``load_script`` import a file (a script in ``scripts/``, a fake module) as a fresh module;
``fake_carla`` installs ``tests/envs/fake_carla.py`` as ``carla``.
"""

import importlib.util
import os
import sys
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]


def _import_file(path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_file():
    """``load_file(path, name)``: the Python file imported as a new module named ``name`` (a fresh copy each call)."""
    return _import_file


@pytest.fixture
def load_script():
    """``load_script("bench_driving")``: ``scripts/bench_driving.py`` imported as a new module."""
    return lambda name: _import_file(ROOT / "scripts" / f"{name}.py", name)


@pytest.fixture
def fake_carla(monkeypatch):
    """The fake ``carla`` module (tests/envs/fake_carla.py), installed as ``carla``, with a fresh server."""
    module = _import_file(ROOT / "tests" / "envs" / "fake_carla.py", "fake_carla_for_tests")
    monkeypatch.setitem(sys.modules, "carla", module)
    module.reset_server()
    return module
