"""The code blocks of the documentation (``docs/**/*.md``) and of ``README.md``, and how each kind is checked.

- ``python``: executed, with the training and evaluation budgets it names (``total_timesteps=``,
  ``learning_starts=``, ``n_eval_episodes=``) cut to tiny ones; a block whose first line is ``# name.py`` is a
  module the page's other blocks import, written to the working folder instead.
- ``yaml``: validated as an experiment config by :func:`morl.config.config_from_dict`.
- ``bash``: every ``scripts/``, ``configs/`` and ``assets/`` path it names exists; every ``--option`` given to
  ``morl <command>`` is one of that command's options and every one given to ``scripts/X.py`` is in that
  script; every extra in ``pip install ".[extra]"`` is declared in ``setup.cfg``.
"""

from __future__ import annotations

import argparse
import configparser
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"^```(\S*)\n(.*?)^```", re.S | re.M)
LANGUAGES = {"python", "yaml", "bash"}
#: budgets a Python block names, and the tiny ones the tests run it with
TINY_BUDGETS = {"total_timesteps": 300, "learning_starts": 100, "n_eval_episodes": 2}
MODULE_HEADER = re.compile(r"#\s*(\w+)\.py\n")


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, text)`` of every fenced code block of a Markdown file (MyST directives ``{...}`` left out)."""
    return [(lang, text) for lang, text in FENCE.findall(path.read_text()) if not lang.startswith("{")]


def block_ids(path: Path, language: str) -> list[tuple[Path, int, str]]:
    return [(path, i, text) for i, (lang, text) in enumerate(code_blocks(path)) if lang == language]


def module_name(block: str) -> str | None:
    match = MODULE_HEADER.match(block)
    return match.group(1) if match else None


def write_modules(path: Path, folder: Path) -> None:
    """Write the page's module blocks (first line ``# name.py``) into ``folder``."""
    for lang, text in code_blocks(path):
        name = module_name(text) if lang == "python" else None
        if name:
            (folder / f"{name}.py").write_text(text)


def with_tiny_budgets(block: str) -> str:
    for name, value in TINY_BUDGETS.items():
        block = re.sub(rf"\b{name}=[\d_]+", f"{name}={value}", block)
    return block


def check_config_block(data: dict, source: str):
    """Validate a YAML block through the config schema (a ConfigError names the field of a wrong block) and check
    that every plain value the block sets is what the config holds; returns the config."""
    from morl.config import config_from_dict

    cfg = config_from_dict(data, source=source)
    for section, values in data.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if key in type(getattr(cfg, section)).model_fields and not isinstance(value, (dict, list)):
                    assert getattr(getattr(cfg, section), key) == value, f"{source}: {section}.{key}"
    return cfg


def _subcommand_options() -> dict[str, set[str]]:
    from morl.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {s for action in p._actions for s in action.option_strings} for name, p in sub.choices.items()}


def _commands(block: str) -> list[list[str]]:
    """The block's command lines as shell words (continuations joined, comments dropped), split at ``;``/``&&``."""
    text = block.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in words + [";"]:
            if word in (";", "&&", "||", "&", "|") or word.endswith(";"):
                word = word.rstrip(";")
                if word and word not in ("&&", "||", "&", "|"):
                    current.append(word)
                if current:
                    out.append(current)
                current = []
            else:
                current.append(word.lstrip("("))
    return out


def bash_problems(block: str) -> list[str]:
    """What a bash block names that does not exist (an empty list when everything it names does)."""
    problems = []
    options = None
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = set(cfg["options.extras_require"])
    for words in _commands(block):
        for word in words:
            for path in re.findall(r"(?<![\w/.<])((?:scripts|configs|assets)/[\w./-]+)", word):
                if "<" not in path and not (ROOT / path).exists():
                    problems.append(f"{path} does not exist")
            for group in re.findall(r"\.\[([\w,]+)\]", word):
                problems += [f"extra {e!r} is not in setup.cfg" for e in group.split(",") if e not in extras]
        names = [Path(w).name for w in words]
        if "morl" in names:
            i = names.index("morl")
            if i + 1 >= len(words):
                problems.append("morl without a command")
                continue
            options = options or _subcommand_options()
            command = words[i + 1]
            if command not in options:
                problems.append(f"morl has no command {command!r}")
                continue
            problems += [f"morl {command} has no option {w}" for w in words[i + 2:]
                         if w.startswith("--") and w.split("=")[0] not in options[command]]
        script = next((w for w in words if re.fullmatch(r"scripts/\w+\.py", w)), None)
        if script and (ROOT / script).exists():
            source = (ROOT / script).read_text()
            problems += [f"{script} has no option {w}" for w in words
                         if w.startswith("--") and f'"{w.split("=")[0]}"' not in source]
    return problems
