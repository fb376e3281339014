"""A tiny name -> builder registry, one instance per family (backbones, heads, ...)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class UnknownOptionError(TypeError, ValueError):
    """A keyword option the named builder does not accept; the message lists the valid ones.

    A TypeError (as Python's own unexpected-keyword error) and a ValueError (a bad
    configuration value), so callers catching either keep working.
    """


class Registry(Generic[T]):
    """Maps names to builder callables so that callers never import a concrete class."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("name")`` on a class or factory function."""

        def decorate(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._builders:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return decorate

    def names(self) -> list[str]:
        return sorted(self._builders)

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._builders[name]
        except KeyError:
            valid = ", ".join(self.names())
            message = f"unknown {self.family} {name!r}; valid names: {valid}"
            raise UnknownNameError(message) from None

    def options(self, name: str, exclude: Iterable[str] = ()) -> list[str]:
        """The keyword options builder ``name`` accepts, in signature order, less ``exclude``."""
        skip = set(exclude)
        return [
            p.name
            for p in inspect.signature(self.get(name)).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skip
        ]

    def check_options(
        self,
        name: str,
        given: Iterable[str],
        exclude: Iterable[str] = (),
        what: str = "option",
        listing: str | None = None,
    ) -> None:
        """Raise :class:`UnknownOptionError` naming every option in ``given`` that builder
        ``name`` does not accept (``exclude`` lists the ones the caller sets itself); the
        valid ones follow ``listing`` (default "valid <what>s")."""
        valid = self.options(name, exclude)
        unknown = sorted(set(given) - set(valid))
        if unknown:
            raise UnknownOptionError(
                f"{self.family} {name!r} got unknown {what}(s) {', '.join(unknown)}; "
                f"{listing or f'valid {what}s'}: {', '.join(valid)}"
            )

    def build(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._builders
