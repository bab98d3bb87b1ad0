"""Preorders over named objectives: who has precedence over whom.

A :class:`Preorder` is a reflexive, transitive relation over objective names. Two objectives may be
*tied* (each has precedence at least as high as the other) or *incomparable* (neither). It is written

- as a string of chains: ``"safety > rules > progress, comfort"`` (``>`` higher precedence, ``,``
  same level), several chains joined by ``;`` for a general preorder: ``"safety > progress; rules"``;
- as YAML levels, highest first: ``[[safety], [rules], [progress, comfort]]``;
- as explicit pairs: ``Preorder.from_pairs(objectives, greater=[("safety", "rules")], ties=[...])``.

Comparing two score vectors follows the rulebook semantics (Censi et al. 2019, "Liability, Ethics,
and Culture-Aware Behavior Specification using Rulebooks", arXiv 1902.09355): ``a`` is preferred to
``b`` when, for every objective on which ``b`` beats ``a``, some objective of strictly higher
precedence has ``a`` beating ``b``.

>>> p = Preorder("safety > rules > progress, comfort")
>>> p.levels
(('safety',), ('rules',), ('progress', 'comfort'))
>>> p.prefers([0, 0, 1, 0], [0, 0, 0, 1])    # tied objectives: neither is preferred
False
>>> p.prefers([1, -5, -5, -5], [0, 9, 9, 9])  # safety outranks everything below it
True
>>> Preorder.parse(str(p)) == p
True
"""

from __future__ import annotations

import difflib

import re
from collections.abc import Iterable, Sequence
from functools import cached_property

import numpy as np

__all__ = ["Preorder", "PreorderError"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class PreorderError(ValueError):
    """A preorder could not be built; the message names the offending token."""


def _check_name(token, where: str) -> str:
    if not isinstance(token, str):
        raise PreorderError(f"objective name {token!r} in {where} is not a string")
    name = token.strip()
    if not name:
        raise PreorderError(f"empty objective name in {where!r}")
    if not _NAME.match(name):
        raise PreorderError(f"invalid objective name {name!r} in {where!r}")
    return name


class Preorder:
    """A precedence relation over objective names.

    ``Preorder("safety > rules")`` parses its argument as :meth:`parse` does (a string, a list of
    levels, a mapping or a ``Preorder``); ``Preorder(objectives, geq)`` builds it from a matrix.

    :param objectives: the objective names, their order the order of score vectors; or, without
        ``geq``, anything :meth:`parse` reads.
    :param geq: boolean ``(m, m)`` matrix, ``geq[i, j]`` when objective ``i`` has precedence at least
        as high as ``j``. It is closed reflexively and transitively here.
    """

    def __init__(self, objectives, geq: np.ndarray | None = None):
        if geq is None:
            parsed = Preorder.parse(objectives)
            objectives, geq = parsed.objectives, parsed.geq
        if isinstance(objectives, str):
            raise PreorderError(f"objectives must be a list of names, got the string {objectives!r}")
        objectives = tuple(objectives)
        if not objectives:
            raise PreorderError("a preorder needs at least one objective, got none")
        seen = set()
        for name in objectives:
            _check_name(name, "objectives")
            if name in seen:
                raise PreorderError(f"objective {name!r} is listed twice")
            seen.add(name)
        m = len(objectives)
        rel = np.array(geq, dtype=bool).reshape(m, m) | np.eye(m, dtype=bool)
        for k in range(m):  # Floyd–Warshall transitive closure; m is tiny
            rel |= rel[:, k : k + 1] & rel[k : k + 1, :]
        rel.setflags(write=False)
        self._objectives = objectives
        self._geq = rel
        self._index = {name: i for i, name in enumerate(objectives)}

    # ------------------------------------------------------------------ construction
    @classmethod
    def parse(cls, spec) -> Preorder:
        """Build a preorder from a string, a list of levels, a ``Preorder`` or a mapping.

        A mapping has ``objectives`` and optional ``greater`` / ``ties`` lists of pairs.
        """
        if isinstance(spec, Preorder):
            return spec
        if isinstance(spec, str):
            return cls._from_string(spec)
        if isinstance(spec, dict):
            unknown = set(spec) - {"objectives", "greater", "ties"}
            if unknown:
                raise PreorderError(f"unknown preorder key {sorted(unknown, key=str)[0]!r} (allowed: objectives, greater, ties)")
            if "objectives" not in spec:
                raise PreorderError("preorder mapping needs the key 'objectives'")
            return cls.from_pairs(spec["objectives"], spec.get("greater", ()), spec.get("ties", ()))
        if isinstance(spec, (list, tuple)):
            return cls.from_levels(spec)
        raise PreorderError(f"cannot read a preorder from {type(spec).__name__} {spec!r}")

    @classmethod
    def from_levels(cls, levels: Sequence[Sequence[str]]) -> Preorder:
        """Levels highest first; objectives within a level are tied. A bare name is a level of one."""
        if not levels:
            raise PreorderError("a preorder needs at least one level, got an empty list")
        names: list[str] = []
        level_of: list[int] = []
        for li, level in enumerate(levels):
            if isinstance(level, str):
                level = [level]
            if not isinstance(level, (list, tuple)) or not level:
                raise PreorderError(f"level {li} ({level!r}) must be a non-empty list of objective names")
            for token in level:
                name = _check_name(token, f"level {li}")
                if name in names:
                    raise PreorderError(f"objective {name!r} is listed twice")
                names.append(name)
                level_of.append(li)
        lv = np.array(level_of)
        return cls(names, lv[:, None] <= lv[None, :])

    @classmethod
    def from_pairs(
        cls,
        objectives: Sequence[str],
        greater: Iterable[Sequence[str]] = (),
        ties: Iterable[Sequence[str]] = (),
    ) -> Preorder:
        """A general preorder: ``greater`` holds ``(a, b)`` pairs, a of strictly higher precedence than b;
        ``ties`` holds ``(a, b)`` pairs of equal precedence. Unrelated objectives are incomparable."""
        if not isinstance(objectives, (list, tuple)):
            raise PreorderError(f"objectives must be a list of names, got {type(objectives).__name__} {objectives!r:.60}")
        objectives = [_check_name(o, "objectives") for o in objectives]
        if not objectives:
            raise PreorderError("a preorder needs at least one objective, got none")
        dup = {o for o in objectives if objectives.count(o) > 1}
        if dup:
            raise PreorderError(f"objective {sorted(dup)[0]!r} is listed twice")
        index = {o: i for i, o in enumerate(objectives)}
        m = len(objectives)
        geq = np.zeros((m, m), dtype=bool)
        strict: list[tuple[int, int, str]] = []

        def idx(token, kind):
            name = _check_name(token, kind)
            if name not in index:
                raise PreorderError(f"unknown objective {name!r} in {kind} (objectives: {', '.join(objectives)})")
            return index[name]

        for kind, pairs in (("greater", greater), ("ties", ties)):
            if pairs is None:
                continue
            if not isinstance(pairs, (list, tuple)):
                raise PreorderError(f"{kind} must be a list of pairs of objective names, got {pairs!r:.60}")
            for pair in pairs:
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise PreorderError(f"{kind} entry {pair!r} must be a pair of objective names")
                a, b = idx(pair[0], kind), idx(pair[1], kind)
                if a == b and kind == "greater":
                    raise PreorderError(f"objective {objectives[a]!r} cannot have precedence over itself")
                geq[a, b] = True
                if kind == "ties":
                    geq[b, a] = True
                else:
                    strict.append((a, b, f"{objectives[a]} > {objectives[b]}"))
        out = cls(objectives, geq)
        for a, b, token in strict:
            if out._geq[b, a]:
                raise PreorderError(f"cycle: {token!r} is contradicted by the other pairs, which put them level")
        return out

    @classmethod
    def _from_string(cls, text: str) -> Preorder:
        if not text.strip():
            raise PreorderError("empty preorder string")
        objectives: list[str] = []
        greater: list[tuple[str, str]] = []
        ties: list[tuple[str, str]] = []
        for chain in text.split(";"):
            if not chain.strip():
                raise PreorderError(f"empty chain in preorder {text!r}")
            levels = []
            for level in chain.split(">"):
                names = [_check_name(tok, chain.strip()) for tok in level.split(",")]
                if len(set(names)) != len(names):
                    dup = next(n for n in names if names.count(n) > 1)
                    raise PreorderError(f"objective {dup!r} is listed twice in {chain.strip()!r}")
                levels.append(names)
            flat = [n for lv in levels for n in lv]
            dup = {n for n in flat if flat.count(n) > 1}
            if dup:
                raise PreorderError(f"objective {sorted(dup)[0]!r} is listed twice in {chain.strip()!r}")
            for lv in levels:
                for n in lv:
                    if n not in objectives:
                        objectives.append(n)
                ties += [(lv[0], n) for n in lv[1:]]
            greater += [(hi[0], lo[0]) for hi, lo in zip(levels, levels[1:])]
        return cls.from_pairs(objectives, greater, ties)

    # ------------------------------------------------------------------ queries
    @property
    def objectives(self) -> tuple[str, ...]:
        return self._objectives

    @property
    def m(self) -> int:
        return len(self._objectives)

    @property
    def geq(self) -> np.ndarray:
        """``geq[i, j]``: objective i has precedence at least as high as j (read-only)."""
        return self._geq

    @cached_property
    def strictly_above(self) -> np.ndarray:
        """``strictly_above[i, j]``: objective i has strictly higher precedence than j (read-only)."""
        out = self._geq & ~self._geq.T
        out.setflags(write=False)
        return out

    @property
    def is_total(self) -> bool:
        """True when every pair is comparable (a layered preorder, lexicographic with ties)."""
        return bool((self._geq | self._geq.T).all())

    def classes(self) -> list[tuple[int, ...]]:
        """Equivalence classes of tied objectives (indices), in objective order."""
        out, seen = [], set()
        for i in range(self.m):
            if i in seen:
                continue
            cls_ = tuple(j for j in range(self.m) if self._geq[i, j] and self._geq[j, i])
            seen.update(cls_)
            out.append(cls_)
        return out

    @cached_property
    def peers(self) -> np.ndarray:
        """``peers[i, j]``: neither of objectives i and j has strictly higher precedence than the other
        (they are tied, incomparable, or ``i == j``); read-only."""
        out = ~self.strictly_above & ~self.strictly_above.T
        out.setflags(write=False)
        return out

    def maximal(self, indices: Iterable[int]) -> tuple[int, ...]:
        """The objectives among ``indices`` that no other of ``indices`` strictly outranks, in index order."""
        chosen = sorted(set(int(i) for i in indices))
        above = self.strictly_above
        return tuple(j for j in chosen if not any(above[i, j] for i in chosen))

    @cached_property  # a preorder is immutable; acting and every Bellman target ask for this
    def level_indices(self) -> tuple[tuple[int, ...], ...]:
        """Topological generations of the classes, highest precedence first (indices).

        For a total preorder these are its levels. For a general preorder a generation may hold
        incomparable classes: generation ``g`` holds the objectives that only objectives of earlier
        generations strictly outrank. An objective's generation is a place in an order of processing,
        not a precedence: ``greater = [(safety, rules)]`` with ``comfort`` unrelated puts ``safety`` and
        ``comfort`` in generation 0 and ``rules`` in 1, yet ``comfort`` does not outrank ``rules``.
        """
        remaining = set(range(self.m))
        above = self.strictly_above
        out = []
        while remaining:
            gen = tuple(j for j in sorted(remaining) if not any(above[i, j] for i in remaining))
            out.append(gen)
            remaining -= set(gen)
        return tuple(out)

    @property
    def levels(self) -> tuple[tuple[str, ...], ...]:
        """:attr:`level_indices` as names."""
        return tuple(tuple(self._objectives[i] for i in lv) for lv in self.level_indices)

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise PreorderError(f"unknown objective {name!r} (objectives: {', '.join(self._objectives)})") from None

    def reindexed(self, objectives: Sequence[str]) -> Preorder:
        """The same relation with objectives in the given order; the name sets must be equal."""
        objectives = tuple(objectives)
        # the preorder's own unknown names first: a misspelt token is named, not the correct name it hides
        for name in self._objectives:
            if name not in objectives:
                close = difflib.get_close_matches(name, objectives, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise PreorderError(f"preorder objective {name!r} is not among the objectives {objectives}{hint}")
        for name in objectives:
            if name not in self._index:
                raise PreorderError(f"objective {name!r} is not in the preorder {str(self)!r}")
        perm = [self._index[n] for n in objectives]
        return Preorder(objectives, self._geq[np.ix_(perm, perm)])

    def prefers(self, a_scores, b_scores) -> bool:
        """Rulebook preference: True when ``a`` is at least as good as ``b`` under the preorder.

        For every objective k with ``b[k] > a[k]`` there must be an objective j strictly above k
        with ``a[j] > b[j]``. Equal score vectors prefer each other; use :meth:`strictly_prefers`
        for the strict part.
        """
        a = np.asarray(a_scores, dtype=float).reshape(-1)
        b = np.asarray(b_scores, dtype=float).reshape(-1)
        if a.shape != (self.m,) or b.shape != (self.m,):
            raise PreorderError(f"score vectors must have {self.m} entries ({', '.join(self._objectives)}), "
                                f"got {a.size} and {b.size}")
        a_wins, b_wins = a > b, b > a
        above = self.strictly_above
        return all((above[:, k] & a_wins).any() for k in np.flatnonzero(b_wins))

    def strictly_prefers(self, a_scores, b_scores) -> bool:
        """``a`` preferred to ``b`` and not the other way round."""
        return self.prefers(a_scores, b_scores) and not self.prefers(b_scores, a_scores)

    # ------------------------------------------------------------------ dunder
    def __eq__(self, other) -> bool:
        if not isinstance(other, Preorder) or set(other.objectives) != set(self.objectives):
            return NotImplemented if not isinstance(other, Preorder) else False
        return bool((other.reindexed(self.objectives).geq == self._geq).all())

    def __hash__(self):
        return hash(frozenset(self._objectives))

    def __str__(self) -> str:
        classes = self.classes()
        names = [", ".join(self._objectives[i] for i in c) for c in classes]
        if self.is_total:
            order = sorted(range(len(classes)), key=lambda c: -int(self._geq[classes[c][0]].sum()))
            return " > ".join(names[c] for c in order)
        # General preorder: the Hasse edges between classes, then the classes no edge touches.
        above = self.strictly_above
        rep = [c[0] for c in classes]
        chains, touched = [], set()
        for x in range(len(classes)):
            for y in range(len(classes)):
                if above[rep[x], rep[y]] and not any(
                    above[rep[x], rep[z]] and above[rep[z], rep[y]] for z in range(len(classes))
                ):
                    chains.append(f"{names[x]} > {names[y]}")
                    touched |= {x, y}
        chains += [names[c] for c in range(len(classes)) if c not in touched]
        return "; ".join(chains)

    def __repr__(self) -> str:
        return f"Preorder({str(self)!r})"
