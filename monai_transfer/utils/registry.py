"""One generic name -> object registry: backbones, SSL methods, weight sources, checkpoint adapters, strategies.

timm's ``register_model`` and MONAI's component lookup in one small class: ``register`` (a call or a decorator),
``get`` that names the close matches of a misspelt name (``difflib.get_close_matches``), ``names``/``list``,
``in`` and the read/write mapping protocol (so ``pytest``'s ``monkeypatch.setitem`` can swap an entry in a test).

>>> from monai_transfer.utils.registry import Registry
>>> colours = Registry("colour")
>>> @colours.register("red")
... def red():
...     return (255, 0, 0)
>>> colours.register((0, 255, 0), name="green")
(0, 255, 0)
>>> colours.get("gren")
Traceback (most recent call last):
...
KeyError: "unknown colour 'gren'; did you mean 'green'? known: ['green', 'red']"
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")

_MISSING: Any = object()


class Registry(MutableMapping[str, T], Generic[T]):
    """Named objects of one kind, in registration order.

    Args:
        kind: what an entry is, for messages (``"backbone"``, ``"SSL method"``, ``"fine-tuning strategy"``).
        normalize: maps a user-given name to the registry key (e.g. ``str.lower``); applied on every lookup and
            registration. Default: the name unchanged.
        loader: called once, before the first lookup, to register the built-in entries lazily (an import of the
            package that holds them); keeps importing the registry cheap and acyclic.
        error: exception class raised for an unknown name (``KeyError``, or ``ValueError`` where an API promises it).
        note: appended to the unknown-name message (``" (see `monai-transfer pretrain --list`)"``).

    Unknown names raise ``error`` with the message ``unknown <kind> '<name>'; did you mean '<close>'? known: [...]``.
    A name registered twice raises ``KeyError`` unless ``overwrite=True``.
    """

    def __init__(
        self,
        kind: str,
        *,
        normalize: Callable[[str], str] | None = None,
        loader: Callable[[], Any] | None = None,
        error: type[Exception] = KeyError,
        note: str = "",
    ) -> None:
        self.kind = kind
        self._normalize = normalize
        self._loader = loader
        self._error = error
        self._note = note
        self._entries: dict[str, T] = {}

    # --- keys -----------------------------------------------------------------------------------------------------
    def key(self, name: Any) -> str:
        """The registry key of a user-given name (after ``normalize``)."""
        name = str(name)
        return self._normalize(name) if self._normalize is not None else name

    def _load(self) -> None:
        loader, self._loader = self._loader, None
        if loader is None:
            return
        try:
            loader()
        except BaseException:
            self._loader = loader  # retried (and the error raised again) on the next lookup
            raise

    # --- registration ---------------------------------------------------------------------------------------------
    def register(self, obj: Any = _MISSING, *, name: str | None = None, overwrite: bool = False) -> Any:
        """Add ``obj`` under ``name`` (default ``obj.name``, else ``obj.__name__``); return ``obj``.

        Used as a decorator when ``obj`` is omitted or is the name::

            @registry.register            # name: the function's ``__name__`` (or its ``name`` attribute)
            @registry.register("simclr")  # or registry.register(name="simclr")

        Raises:
            KeyError: the name is taken and ``overwrite`` is False.
        """
        if obj is _MISSING or (isinstance(obj, str) and name is None):
            given = name if obj is _MISSING else obj

            def decorator(target: Any) -> Any:
                return self.register(target, name=given, overwrite=overwrite)

            return decorator
        if name is None:
            name = getattr(obj, "name", None)
            if not isinstance(name, str):
                name = getattr(obj, "__name__", None)
            if not isinstance(name, str):
                raise TypeError(f"cannot tell the name of {obj!r}: pass name= to register it as a {self.kind}.")
        key = self.key(name)
        if key in self._entries and not overwrite:
            raise KeyError(f"{self.kind} {key!r} is already registered; pass overwrite=True to replace it.")
        self._entries[key] = obj
        return obj

    def unregister(self, name: str) -> T:
        """Remove and return an entry (``KeyError`` with hints when unknown)."""
        key = self.key(name)
        value = self.get(key)
        del self._entries[key]
        return value

    # --- lookup -----------------------------------------------------------------------------------------------------
    def close_matches(self, name: Any, n: int = 5) -> list[str]:
        """Up to ``n`` registered names close to ``name``: ``difflib`` matches, then names that contain it."""
        self._load()
        key = self.key(name)
        close = difflib.get_close_matches(key, list(self._entries), n=n, cutoff=0.6)
        close += [k for k in self._entries if key and key in k and k not in close]
        return close[:n]

    def unknown_message(self, name: Any) -> str:
        """The message of the error raised for an unknown ``name``."""
        close = self.close_matches(name)
        hint = ""
        if len(close) == 1:
            hint = f"; did you mean {close[0]!r}?"
        elif close:
            hint = f"; did you mean one of {close}?"
        return f"unknown {self.kind} {name!r}{hint}{';' if not hint else ''} known: {self.list()}{self._note}"

    def get(self, name: Any, default: Any = _MISSING) -> Any:
        """The entry registered as ``name``; ``default`` when given and unknown, else the registry's error (with hints)."""
        self._load()
        key = self.key(name)
        if key in self._entries:
            return self._entries[key]
        if default is not _MISSING:
            return default
        raise self._error(self.unknown_message(name))

    def names(self) -> list[str]:
        """Registered names in registration order."""
        self._load()
        return list(self._entries)

    def list(self, pattern: str | None = None) -> list[str]:  # noqa: A003 - the registry's listing, as in timm
        """Registered names, sorted, optionally filtered by a shell-style ``pattern`` (``"resnet*"``)."""
        names = sorted(self.names())
        if pattern is not None:
            names = [n for n in names if fnmatch.fnmatch(n, pattern)]
        return names

    # --- mapping protocol -------------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        # the mapping protocol's KeyError (``pop``, ``setdefault``... rely on it), with the hints in its message
        self._load()
        key = self.key(name)
        if key not in self._entries:
            raise KeyError(self.unknown_message(name))
        return self._entries[key]

    def __setitem__(self, name: str, value: T) -> None:
        self._entries[self.key(name)] = value

    def __delitem__(self, name: str) -> None:
        del self._entries[self.key(name)]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._load()
        return self.key(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
