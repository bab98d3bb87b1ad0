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


def _cell(text: str, code: bool = True) -> nodes.entry:
    entry = nodes.entry()
    if text:
        entry += nodes.paragraph("", "", nodes.literal(text, text) if code and text != "required" else nodes.Text(text))
    return entry


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


def _table(header: list[str], rows: list[list[nodes.entry]]) -> nodes.table:
    """A docutils table built directly (MyST would parse RST table markup as Markdown)."""
    table, group = nodes.table(), nodes.tgroup(cols=len(header))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in header]
    head = nodes.thead()
    head += nodes.row("", *[_cell(h, code=False) for h in header])
    body = nodes.tbody()
    body += [nodes.row("", *row) for row in rows]
    group += [head, body]
    return table


class ConfigReference(SphinxDirective):
    has_content = False

    def run(self):
        from morl.config import ExperimentConfig

        out = []
        for section, model in schema_sections(ExperimentConfig):
            rows = []
            for name, field in model.model_fields.items():
                key = f"{section}.{name}" if section else name
                rows.append([_cell(key), _cell(_type_name(field.annotation)), _cell(_default(field)),
                             _cell(_constraint(field), code=False), _cell(field.description or "", code=False)])
            doc = inspect.cleandoc(model.__doc__) if model.__doc__ and model.__doc__ != BaseModel.__doc__ else ""
            title = section or "top level"
            node = nodes.section(ids=[f"config-{title.replace(' ', '-')}"])
            node += nodes.title(text=title)
            if doc:
                node += nodes.paragraph(text=" ".join(doc.split()))
            node += _table(["key", "type", "default", "constraint", "meaning"], rows)
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
            help_text = subparser.format_help()
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
            rows.append([_cell(pname), _cell("required" if param.default is param.empty else repr(param.default))])
        return [nodes.rubric(text=f"{name} defaults"), _table(["argument", "default"], rows)]


def setup(app):
    app.add_directive("morl-config-reference", ConfigReference)
    app.add_directive("morl-cli", CliReference)
    app.add_directive("morl-defaults", AgentDefaults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
