"""State machines as data: one transition table per kind of row."""
from __future__ import annotations

import enum


class IllegalTransition(ValueError):
    """A move the table does not allow; nothing was changed."""

    def __init__(self, kind: str, current: str, wanted: str) -> None:
        super().__init__(f"{kind}: {current} → {wanted} is not allowed")
        self.kind, self.current, self.wanted = kind, current, wanted


class StateMachine:
    def __init__(self, kind: str, states: type[enum.Enum], moves: dict[enum.Enum, set[enum.Enum]]) -> None:
        self.kind, self.states, self.moves = kind, states, moves

    def allows(self, current: str, wanted: enum.Enum) -> bool:
        return wanted in self.moves.get(self.states(current), set())

    def check(self, current: str, wanted: enum.Enum) -> str:
        if not self.allows(current, wanted):
            raise IllegalTransition(self.kind, current, wanted.value)
        return wanted.value


def check_in(column: str, enum_cls: type[enum.Enum]) -> str:
    """SQL for a CHECK constraint mirroring an enum."""
    return f"{column} IN ({', '.join(repr(e.value) for e in enum_cls)})"
