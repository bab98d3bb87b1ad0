"""The documentation site builds with warnings as errors, its generated reference pages follow the code, and every
code block of ``docs/`` is run or checked (``tests/doc_blocks.py`` says how; the README's blocks are in
``tests/test_readme.py``)."""

import html
import re
import subprocess
import sys
import time

import pytest
import yaml

from doc_blocks import (LANGUAGES, PAGES, ROOT, bash_problems, block_ids, check_config_block, code_blocks, module_name,
                        with_tiny_budgets, write_modules)
from morl.config import ExperimentConfig

PYTHON = [b for page in PAGES for b in block_ids(page, "python")]
YAML = [b for page in PAGES for b in block_ids(page, "yaml")]
BASH = [b for page in PAGES for b in block_ids(page, "bash")]


def _id(block) -> str:
    return f"{block[0].relative_to(ROOT / 'docs')}:{block[1]}"


def _text(page) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", page.read_text())))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(ROOT / "docs"), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, time.perf_counter() - start


def test_docs_build_without_warnings(built):
    out, seconds = built
    assert (out / "index.html").exists()
    assert seconds < 120, f"the docs build took {seconds:.0f} s"


def test_config_reference_lists_every_schema_key(built):
    text = _text(built[0] / "config.html")
    for section, field in ExperimentConfig.model_fields.items():
        assert section in text
        model = getattr(field.annotation, "model_fields", None) or getattr(
            next((a for a in getattr(field.annotation, "__args__", ()) if hasattr(a, "model_fields")), None),
            "model_fields", {})
        for name, sub in model.items():
            assert f"{section}.{name}" in text, f"{section}.{name} missing from the YAML reference"
            if sub.description:
                assert " ".join(sub.description.split()) in text


def test_cli_page_lists_every_option(built):
    from doc_blocks import _subcommand_options

    text = _text(built[0] / "cli.html")
    for command, options in _subcommand_options().items():
        assert f"morl {command}" in text
        for option in options - {"-h", "--help"}:
            assert option in text, f"morl {command} {option} missing from the CLI page"


def test_agent_pages_give_paper_and_defaults(built):
    text = _text(built[0] / "agents" / "qdiqn.html")
    assert "arXiv 2603.20230" in text and "QDIQN defaults" in text
    assert re.search(r"theta\s+0\.75", text), "QDIQN's default theta is not in its defaults table"


def test_docs_use_only_checked_languages():
    for page in PAGES:
        for lang, _ in code_blocks(page):
            assert lang in LANGUAGES, f"{page}: a ```{lang} block is neither run nor checked by a test"


@pytest.mark.parametrize("block", [b for b in PYTHON if not module_name(b[2])], ids=_id)
def test_python_block_runs(block, tmp_path, monkeypatch, one_torch_thread):
    page, _, text = block
    write_modules(page, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    if ".learn(" in text:
        assert "total_timesteps=" in text, "give the training budget as total_timesteps= so the test can cut it"
    exec(compile(with_tiny_budgets(text), f"{page}:block", "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("block", YAML, ids=_id)
def test_yaml_block_validates(block, tmp_path, monkeypatch):
    page, _, text = block
    write_modules(page, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = yaml.safe_load(text)
    data.setdefault("name", "docs")
    check_config_block(data, str(page))


@pytest.mark.parametrize("block", BASH, ids=_id)
def test_bash_block_names_what_exists(block):
    assert bash_problems(block[2]) == []


def test_bash_check_catches_what_does_not_exist():
    assert bash_problems("morl train configs/driving_qdiqn.yaml --set a=1") == []
    assert bash_problems("morl train configs/no_such.yaml") == ["configs/no_such.yaml does not exist"]
    assert bash_problems("morl eval runs/x --epsiodes 5") == ["morl eval has no option --epsiodes"]
    assert bash_problems("morl trian configs/driving_qdiqn.yaml") == ["morl has no command 'trian'"]
    assert bash_problems(".venv/bin/python scripts/run_carla.py --hots x") == ["scripts/run_carla.py has no option --hots"]
    assert bash_problems('pip install -e ".[dev,cuda]"') == ["extra 'cuda' is not in setup.cfg"]
