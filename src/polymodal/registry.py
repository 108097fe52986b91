"""Registries of components: a new encoder, fusion or task is one class plus one ``@register`` line, and its
parameters one class plus one ``@register`` line in :mod:`polymodal.params` (registries of the same names).

The CLI, the config check, the config schema and ``compare`` read these registries; nothing else lists component
names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import ConfigError

if TYPE_CHECKING:  # type-only: the registries sit below the packages whose classes they hold
    from .encoders.base import Encoder
    from .fusion.base import Fusion
    from .tasks.base import Task

T = TypeVar("T")
# What a registration decorates: a component class (of type[T]) or, in registries of builders, a function.
C = TypeVar("C", bound=Callable[..., Any])


class Registry(Generic[T]):
    """A name → class mapping with helpful errors on unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[C], C]:
        def deco(cls: C) -> C:
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = cls
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def get(self, name: str) -> type[T]:
        try:
            return self._items[name]  # register() stored a type[T] (or a builder function) under the name
        except KeyError:
            close = difflib.get_close_matches(str(name), list(self._items), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"unknown {self.kind} '{name}'; {hint}choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, type[T]]]:
        """(name, class) pairs in name order."""
        return iter(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)


ENCODERS: Registry["Encoder"] = Registry("encoder")
FUSIONS: Registry["Fusion"] = Registry("fusion")
TASKS: Registry["Task"] = Registry("task")
# How a task's network is assembled from the encoders: "fused" (fusion → head) or "seq2seq" (token memory → decoder).
ARCHITECTURES: Registry[Any] = Registry("model architecture")


def register(registry: Registry[T], name: str) -> Callable[[C], C]:
    """``@register(ENCODERS, "image_cnn")`` — the one line that makes a component available everywhere."""
    return registry.register(name)
