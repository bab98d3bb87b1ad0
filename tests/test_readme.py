"""The README's examples stay true: its YAML blocks validate against the config schema, and the Python range
it states is the one ``setup.cfg`` declares."""

import configparser
import re
from pathlib import Path

import pytest
import yaml

from morl.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)


def test_readme_has_yaml_blocks():
    assert YAML_BLOCKS, "README.md has no ```yaml block"


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[f"block{i}" for i in range(len(YAML_BLOCKS))])
def test_readme_yaml_block_validates(block):
    data = yaml.safe_load(block)
    data.setdefault("name", "readme")  # the abridged blocks leave the run name out
    config_from_dict(data, source="README.md")


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
