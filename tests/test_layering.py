"""Dependencies point one way: agents -> morl <- envs; envs never import agents nor the experiment layer."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORT = re.compile(r"^\s*(?:from|import)\s+([\w.]+)", re.M)


def _imports(folder: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT)): set(IMPORT.findall(p.read_text())) for p in (ROOT / folder).rglob("*.py")}


def test_envs_import_neither_agents_nor_the_experiment_layer():
    bad = {f: sorted(m for m in mods if m.startswith(("morl.agents", "morl.experiment", "morl.registry", "morl.sweep",
                                                      "morl.cli", "morl.benchmark")))
           for f, mods in _imports("envs").items()}
    assert not {f: m for f, m in bad.items() if m}, bad


def test_agent_families_never_import_each_other():
    for f, mods in _imports("agents").items():
        parts = Path(f).parts
        if len(parts) < 3:
            continue  # agents/__init__.py exports every family
        family = parts[1]
        others = sorted(m for m in mods if m.startswith("morl.agents.") and m.split(".")[2] != family)
        assert not others, (f, others)
        assert not any(m.startswith("morl.envs") for m in mods), f


def test_the_core_does_not_import_envs_or_agents_outside_the_experiment_layer():
    layer = {"morl/config.py", "morl/experiment.py", "morl/sweep.py", "morl/cli.py", "morl/registry.py",
             "morl/benchmark.py"}
    for f, mods in _imports("morl").items():
        if f in layer:
            continue
        assert not any(m.startswith(("morl.envs", "morl.agents")) for m in mods), f
