"""One registry for everything a user can name: backends, attacks, defenses, output formats,
audits and DP auditors.

Each entry maps a name to ``"package.module:object"`` (or ``"package.module"`` for a module), an
import made on first use, so ``import leakaudit.registry`` and ``leakaudit list`` stay cheap (no
torch) and a backend's heavy dependencies load only when it is chosen. Each entry also says, in
words, what it is: its capabilities (what a backend provides, what an attack needs), its threat
model, a reference (paper or documentation), and for a defense what it produces. The builtin
entries are one table, :mod:`leakaudit.registry.builtin`.

A misspelled name answers with the closest ones and every available name::

    >>> entry("attacks", "mink")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    leakaudit.registry.UnknownName: unknown attack 'mink'. Did you mean: min_k? Available: ...

**Plugins.** Another package adds entries through the Python entry-point group
``leakaudit.plugins``: each entry point names a module (importing it registers its entries with
:func:`register`) or a callable (called with no arguments; it calls :func:`register`)::

    # pyproject.toml of the plugin
    [project.entry-points."leakaudit.plugins"]
    mybackend = "my_pkg.leakaudit_plugin"

Plugins are read once, on the first lookup. A plugin that fails to import or to register is
reported in a warning naming it (and by :func:`plugin_errors`); the builtin entries and the other
plugins stay usable.

Lowest layer: this package imports only the standard library and :mod:`leakaudit.errors`.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from leakaudit.errors import LeakauditError

#: The kinds of entries, in the order ``leakaudit list`` shows them.
KINDS = ("backends", "attacks", "defenses", "formats", "audits", "dp-auditors")
#: The entry-point group other packages register in.
PLUGIN_GROUP = "leakaudit.plugins"
#: What a defense produces (the ``produces`` of a ``defenses`` entry).
DEFENSE_PRODUCTS = {
    "corpus": "a transformed training corpus (train again, audit again)",
    "training": "a training procedure (a model trained with it)",
    "decoding": "a decoding wrapper around a target (same weights, filtered outputs)",
    "weights": "edited or replaced weights (a new target)",
}
_SINGULAR = {"backends": "backend", "attacks": "attack", "defenses": "defense", "formats": "format",
             "audits": "audit", "dp-auditors": "DP auditor"}


class UnknownName(LeakauditError, KeyError):
    """A name no entry has; the message suggests the closest names and lists the available ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Entry:
    """One registered thing. ``target`` is ``"module:object"``, ``"module"`` or the object itself;
    :meth:`load` imports it (once). ``capabilities``: what a backend provides, or what an attack
    needs from a target. ``produces``: for a defense, one of :data:`DEFENSE_PRODUCTS`; for a
    format, the file it writes. ``requires``: importable modules it needs, provided by the pip
    ``extra``. ``meta``: anything else a kind uses (an attack's ``family``, a backend's ``scheme``
    flag: whether ``load_target("NAME:...")`` reaches it). ``source``: ``"leakaudit"`` (a builtin
    row), the plugin's entry-point name, or ``"runtime"`` (registered by the running program)."""

    kind: str
    name: str
    target: Any
    summary: str
    capabilities: tuple[str, ...] = ()
    threat_model: str = ""
    reference: str = ""
    produces: str = ""
    requires: tuple[str, ...] = ()
    extra: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: str = "runtime"

    def load(self) -> Any:
        """The registered object, imported on first use; a missing dependency raises
        :class:`LeakauditError` naming the pip extra that provides it."""
        key = (self.kind, self.name)
        if key not in _LOADED:
            self.check_requires()
            _LOADED[key] = self.target if not isinstance(self.target, str) else self._import()
        return _LOADED[key]

    def check_requires(self) -> None:
        """Raise :class:`LeakauditError` if a module this entry needs is not installed."""
        import importlib.util

        for mod in self.requires:
            if importlib.util.find_spec(mod) is None:
                how = f"pip install 'leakaudit[{self.extra}]'" if self.extra else f"pip install {mod}"
                raise LeakauditError(f"the {self.name} {_SINGULAR[self.kind]} needs the {mod!r} "
                                     f"package, which is not installed: {how}")

    def _import(self) -> Any:
        mod, _, obj = self.target.partition(":")
        try:
            m = importlib.import_module(mod)
            return getattr(m, obj) if obj else m
        except (ImportError, AttributeError) as e:
            how = f"pip install 'leakaudit[{self.extra}]'" if self.extra else "pip install leakaudit"
            raise LeakauditError(f"the {self.name} {_SINGULAR[self.kind]} could not be imported "
                                 f"from {self.target!r} ({e}); {how}") from None

    def to_dict(self) -> dict[str, Any]:
        """What ``leakaudit list --json`` prints for this entry."""
        target = self.target if isinstance(self.target, str) else _qualname(self.target)
        return {"kind": self.kind, "name": self.name, "target": target, "summary": self.summary,
                "capabilities": list(self.capabilities), "threat_model": self.threat_model,
                "reference": self.reference, "produces": self.produces,
                "requires": list(self.requires), "extra": self.extra, "meta": dict(self.meta),
                "source": self.source}


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


_ENTRIES: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
_LOADED: dict[tuple[str, str], Any] = {}
_PLUGINS: dict[str, Any] = {"loaded": False, "errors": [], "current": "runtime"}


def _check_kind(kind: str) -> None:
    if kind not in _ENTRIES:
        _unknown("kind", kind, list(_ENTRIES))


def _unknown(what: str, name: str, available: list[str]):
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" Did you mean: {close[0]}?" if close else ""
    raise UnknownName(f"unknown {what} {name!r}.{hint} Available: {', '.join(sorted(available))}")


def register(kind: str, name: str, target: Any, *, summary: str,
             capabilities: tuple[str, ...] | list[str] = (), threat_model: str = "",
             reference: str = "", produces: str = "", requires: tuple[str, ...] | list[str] = (),
             extra: str | None = None, replace: bool = False, **meta: Any) -> Entry:
    """Add an entry (see :class:`Entry` for the fields). ``target`` is ``"module:object"``
    (imported on first use; preferred), ``"module"``, or the object. A name already taken raises
    ``ValueError`` unless ``replace=True`` (tests only: a plugin never shadows a builtin)."""
    _check_kind(kind)
    if not name or not isinstance(name, str):
        raise ValueError(f"a {_SINGULAR[kind]} needs a non-empty name; got {name!r}")
    if not summary:
        raise ValueError(f"{_SINGULAR[kind]} {name!r}: summary is required")
    if kind == "defenses" and produces not in DEFENSE_PRODUCTS:
        raise ValueError(f"defense {name!r}: produces must be one of {', '.join(DEFENSE_PRODUCTS)}; "
                         f"got {produces!r}")
    if isinstance(target, str) and not target.partition(":")[0]:
        raise ValueError(f"{_SINGULAR[kind]} {name!r}: target must look like 'module:object'")
    old = _ENTRIES[kind].get(name)
    if old is not None and not replace:
        raise ValueError(f"{_SINGULAR[kind]} {name!r} is already registered (by {old.source})")
    e = Entry(kind, name, target, summary, tuple(capabilities), threat_model, reference, produces,
              tuple(requires), extra, dict(meta), _PLUGINS["current"])
    _ENTRIES[kind][name] = e
    _LOADED.pop((kind, name), None)
    return e


def _table() -> dict[str, dict[str, Entry]]:
    """Every entry, builtins first, then plugins (read once)."""
    if not _PLUGINS["loaded"]:
        _PLUGINS["loaded"] = True
        load_plugins()
    return _ENTRIES


def entry(kind: str, name: str, **where: Any) -> Entry:
    """The entry ``name`` of ``kind``; ``where`` narrows to entries whose ``meta`` has those values
    (``entry("attacks", "lira", family="membership")``). Unknown names raise :class:`UnknownName`
    with the closest names."""
    _check_kind(kind)
    found = {e.name: e for e in entries(kind, **where)}
    if name not in found:
        what = " ".join([*(str(v) for v in where.values()), _SINGULAR[kind]])
        _unknown(what, name, list(found))
    return found[name]


def load(kind: str, name: str, **where: Any) -> Any:
    """The object registered as ``name`` (imported on first use)."""
    return entry(kind, name, **where).load()


def entries(kind: str, **where: Any) -> list[Entry]:
    """The entries of ``kind`` in registration order, those whose ``meta`` matches ``where``."""
    _check_kind(kind)
    return [e for e in _table()[kind].values()
            if all(e.meta.get(k) == v for k, v in where.items())]


def names(kind: str, **where: Any) -> list[str]:
    return [e.name for e in entries(kind, **where)]


def plugin_errors() -> list[str]:
    """One line per plugin that could not be loaded (also given as a warning)."""
    _table()
    return list(_PLUGINS["errors"])


def load_plugins() -> list[str]:
    """Import every ``leakaudit.plugins`` entry point; return their names. A failing plugin is
    recorded and warned about, never raised: the rest of the registry stays usable."""
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        _PLUGINS["current"] = ep.name
        try:
            obj = ep.load()
            if callable(obj):
                obj()
            loaded.append(ep.name)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break leakaudit
            msg = (f"leakaudit plugin {ep.name!r} ({ep.value}) could not be loaded: "
                   f"{type(e).__name__}: {e}; its entries are missing")
            _PLUGINS["errors"].append(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        finally:
            _PLUGINS["current"] = "runtime"
    return loaded


class View:
    """The entries of one kind whose ``meta`` matches ``where``, with the small mapping interface
    the attack families use (``MEMBERSHIP_ATTACKS.get("min_k")`` returns the class)."""

    def __init__(self, kind: str, **where: Any):
        self.kind, self.where = kind, where

    def get(self, name: str) -> Any:
        return load(self.kind, name, **self.where)

    def names(self) -> list[str]:
        return names(self.kind, **self.where)

    def values(self) -> Iterator[Any]:
        return iter([self.get(n) for n in self.names()])

    def __contains__(self, name: object) -> bool:
        return name in self.names()


def _builtins() -> None:
    from leakaudit.registry.builtin import BUILTIN

    _PLUGINS["current"] = "leakaudit"
    try:
        for kind, rows in BUILTIN.items():
            for name, target, fields in rows:
                register(kind, name, target, **fields)
    finally:
        _PLUGINS["current"] = "runtime"


_builtins()


T = TypeVar("T")


class Registry(Generic[T]):
    """A small named table of already-built objects (entry types, extraction samplers and
    rankings), with the same did-you-mean on a typo. Things a user chooses or a plugin adds go in
    the lazy registry above instead."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" Did you mean: {close[0]}?" if close else ""
            raise KeyError(
                f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def values(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def __contains__(self, name: str) -> bool:
        return name in self._items
