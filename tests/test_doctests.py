"""The docstring examples of morl.envs and morl.agents, imported by their installed names.

pytest's own ``--doctest-modules`` imports a file by its folder (``envs/driving/env.py`` as ``envs.driving.env``),
which is not the name the package installs under, so these modules are collected here instead
(``morl/`` itself is collected by ``--doctest-modules``).
"""

import doctest
import importlib
import pkgutil

import pytest

import morl.agents
import morl.envs


def _modules():
    names = []
    for pkg in (morl.envs, morl.agents):
        names.append(pkg.__name__)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + ".")]
    return sorted(names)


MODULES = _modules()


def test_every_subpackage_is_found():
    for name in ("morl.envs.driving.env", "morl.envs.coverage.maps", "morl.agents.iqn.qdiqn", "morl.agents.carl.reward"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)  # the optional CARLA client is imported only when a CarlaEnv starts
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see the output above)"
