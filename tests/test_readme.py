"""The README's examples stay true: its YAML blocks validate against the config schema, its Python blocks run,
its bash blocks name scripts, configs and options that exist (``tests/doc_blocks.py``), and the Python range it
states is the one ``setup.cfg`` declares."""

import configparser
import re
from pathlib import Path

import pytest
import yaml

from doc_blocks import LANGUAGES, bash_problems, check_config_block, code_blocks, with_tiny_budgets

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = code_blocks(ROOT / "README.md")
YAML_BLOCKS = [text for lang, text in BLOCKS if lang == "yaml"]
PYTHON_BLOCKS = [text for lang, text in BLOCKS if lang == "python"]
BASH_BLOCKS = [text for lang, text in BLOCKS if lang == "bash"]


def test_readme_has_yaml_blocks():
    assert YAML_BLOCKS, "README.md has no ```yaml block"


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[f"block{i}" for i in range(len(YAML_BLOCKS))])
def test_readme_yaml_block_validates(block):
    data = yaml.safe_load(block)
    data.setdefault("name", "readme")  # the abridged blocks leave the run name out
    check_config_block(data, "README.md")


def test_readme_uses_only_checked_languages():
    assert {lang for lang, _ in BLOCKS} <= LANGUAGES, "a README block is neither run nor checked by a test"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_readme_python_block_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    exec(compile(with_tiny_budgets(block), "README.md", "exec"), namespace)  # an error in the block fails the test
    if ".learn(" in block:  # a block that trains leaves a model that took steps
        assert any(getattr(v, "num_timesteps", 0) > 0 for v in namespace.values()), "the block trained nothing"


@pytest.mark.parametrize("block", BASH_BLOCKS, ids=[f"block{i}" for i in range(len(BASH_BLOCKS))])
def test_readme_bash_block_names_what_exists(block):
    assert bash_problems(block) == []


def test_readme_python_range_matches_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    requires = cfg["options"]["python_requires"].replace(" ", "")
    lower = re.fullmatch(r">=3\.(\d+)(?:,<3\.(\d+))?", requires)
    assert lower, f"unexpected python_requires {requires!r}"
    stated = re.search(r"Needs Python 3\.(\d+)(?:–3\.(\d+)| or newer)", README)
    assert stated, "README.md does not state the Python range as 'Needs Python 3.X–3.Y' or '3.X or newer'"
    assert stated.group(1) == lower.group(1)
    if lower.group(2) is None:
        assert stated.group(2) is None, f"README says up to 3.{stated.group(2)}, setup.cfg has no upper bound"
    else:
        assert stated.group(2) is not None and int(stated.group(2)) == int(lower.group(2)) - 1
