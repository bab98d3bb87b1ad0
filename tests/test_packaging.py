"""The built wheel and sdist install morl under one import name, ``morl``, with its envs, agents and assets.

The wheel is built from a copy of the sources and installed (without dependencies) into a fresh venv whose
dependencies come from this venv's site-packages as a plain path entry (so this checkout's editable install is
not seen); the checks run from an empty folder, where nothing of the checkout is importable.
"""

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "morl", "envs", "agents", "assets")

CHECK = textwrap.dedent("""
    import importlib.util, sys
    import gymnasium as gym
    for name in ("envs", "agents"):
        assert importlib.util.find_spec(name) is None, f"the install claims the top-level name {name!r}"
    import morl
    assert "morl.envs" not in sys.modules and "torch" not in sys.modules, "import morl must stay light"
    env = gym.make("morl.envs:morl/Route-v0")      # Gymnasium's module:id form, no separate import
    assert env.get_wrapper_attr("objectives") == ("safety", "rules", "progress", "comfort")
    assert env.get_wrapper_attr("reward_space").shape == (4,)
    assert str(env.get_wrapper_attr("preorder")) == "safety > rules > progress > comfort"
    from morl.agents import QDIQN
    from morl.assets import asset_path
    assert asset_path("routes", "town01_route.json").is_file() and asset_path("densities", "ring.npy").is_file()
    from morl.envs.coverage.maps import gorilla_like_density
    gorilla_like_density(30, 30)
    model = QDIQN("MlpPolicy", env, learning_starts=50, buffer_size=500, seed=0)
    model.learn(100)
    print("installed-ok", morl.__file__)
""")


def _sources(tmp: Path) -> Path:
    src = tmp / "src"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(path, src / name)
    return src


def _build(src: Path, what: str) -> Path:
    out = src / "dist"
    code = f"from setuptools import build_meta as b; print(b.build_{what}({str(out)!r}))"
    run = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return out / run.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build(_sources(tmp_path_factory.mktemp("pkg")), "wheel")


def test_wheel_holds_only_the_morl_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"morl"}, tops
    for expected in ("morl/envs/driving/sim.py", "morl/agents/iqn/qdiqn.py", "morl/agents/lexppo/lex_ppo.py",
                     "morl/assets/routes/town01_route.json", "morl/assets/coverage/point_robot.xml"):
        assert expected in names, expected
    # every sub-package of the folders is in the wheel (setup.cfg lists them by hand)
    for folder, pkg in (("envs", "morl/envs"), ("agents", "morl/agents")):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.relative_to(ROOT / folder).as_posix()
            assert f"{pkg}/{rel}" in names, f"{folder}/{rel} is not packaged: add it to setup.cfg's packages"


def test_sdist_holds_the_sources(tmp_path):
    sdist = _build(_sources(tmp_path), "sdist")
    names = tarfile.open(sdist).getnames()
    for expected in ("setup.cfg", "envs/driving/sim.py", "agents/iqn/qdiqn.py", "assets/densities/ring.npy"):
        assert any(n.endswith(expected) for n in names), expected


def test_wheel_installs_and_runs_in_a_clean_venv(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # dependencies from this venv, as a path entry: its .pth files (our editable install) are not processed
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as zf:  # installing a pure wheel is unpacking it into site-packages
        zf.extractall(site)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    run = subprocess.run([str(py), "-c", CHECK], cwd=empty, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "installed-ok" in run.stdout and str(site) in run.stdout
