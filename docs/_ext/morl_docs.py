"""Sphinx directives that generate reference pages from the code, so they cannot drift from it.

- ``morl-config-reference``: one table per section of the YAML experiment schema
  (:class:`morl.config.ExperimentConfig`): key, type, default, constraint and description, read from the
  pydantic models and their ``Field(description=...)``.
- ``morl-cli``: the help text of every ``morl`` subcommand, from :func:`morl.cli.build_parser`.
- ``morl-defaults``: a table of an agent class's constructor arguments and their defaults
  (``.. morl-defaults:: morl.agents.QDIQN``), from its signature.
"""

from __future__ import annotations

import importlib
import inspect
import typing

from docutils import nodes
from docutils.statemachine import StringList
from pydantic import BaseModel
from sphinx.util.docutils import SphinxDirective


def _type_name(annotation) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    for prefix in ("morl.config.",):
        text = text.replace(prefix, "")
    return text


def _constraint(field) -> str:
    symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    parts = []
    for meta in field.metadata:
        for attr, sym in symbols.items():
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}")
    return ", ".join(parts)


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else repr(value)
    return repr(field.default)


def _cell(text: str) -> str:
    return f"``{text}``" if text and text != "required" else (text or "")


def _submodel(annotation) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def schema_sections(model: type[BaseModel], prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    """``(dotted section, model)`` for ``model`` and every nested section, depth first."""
    out = [(prefix, model)]
    for name, field in model.model_fields.items():
        sub = _submodel(field.annotation)
        if sub is not None and not prefix:
            out += schema_sections(sub, name)
    return out


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", "   :widths: auto", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines + [""]


class ConfigReference(SphinxDirective):
    has_content = False

    def run(self):
        from morl.config import ExperimentConfig

        out = []
        for section, model in schema_sections(ExperimentConfig):
            rows = []
            for name, field in model.model_fields.items():
                key = f"{section}.{name}" if section else name
                rows.append([f"``{key}``", _cell(_type_name(field.annotation)), _cell(_default(field)),
                             _constraint(field), (field.description or "").replace("\n", " ")])
            doc = inspect.cleandoc(model.__doc__) if model.__doc__ and model.__doc__ != BaseModel.__doc__ else ""
            title = section or "top level"
            node = nodes.section(ids=[f"config-{title.replace(' ', '-')}"])
            node += nodes.title(text=title)
            lines = (doc.splitlines() + [""] if doc else []) + _table(
                f"{title} keys", ["key", "type", "default", "constraint", "meaning"], rows)
            self.state.nested_parse(StringList(lines, source="morl-config-reference"), self.content_offset, node)
            out.append(node)
        return out


class CliReference(SphinxDirective):
    has_content = False

    def run(self):
        import argparse

        from morl.cli import build_parser

        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        out = []
        for name, subparser in sub.choices.items():
            section = nodes.section(ids=[f"morl-{name}"])
            section += nodes.title(text=f"morl {name}")
            help_text = subparser.format_help().replace("usage: morl", "usage: morl", 1)
            section += nodes.literal_block(help_text, help_text)
            out.append(section)
        return out


class AgentDefaults(SphinxDirective):
    required_arguments = 1

    def run(self):
        module, _, name = self.arguments[0].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        rows = []
        for pname, param in inspect.signature(cls.__init__).parameters.items():
            if pname in ("self", "_init_setup_model") or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            default = "required" if param.default is param.empty else repr(param.default)
            rows.append([f"``{pname}``", _cell(default)])
        lines = _table(f"{name} constructor defaults", ["argument", "default"], rows)
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="morl-defaults"), self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("morl-config-reference", ConfigReference)
    app.add_directive("morl-cli", CliReference)
    app.add_directive("morl-defaults", AgentDefaults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
