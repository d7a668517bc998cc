"""What a writer appended and folded itself, kept until its own tail brings it back."""

from __future__ import annotations

from dtf_core.events.codec import Event


class OwnEvents:
    """Events this process appended and applied to its board at their PubAck, by sequence,
    until its fold's tail delivers them: the tail's copy is then taken from here instead of
    being decoded and applied a second time (the bytes at that sequence are the ones
    this process appended)."""

    def __init__(self) -> None:
        self._events: dict[int, Event] = {}
        self.position = 0  # the fold's: what it has passed is not kept

    def __len__(self) -> int:
        return len(self._events)

    def note(self, seq: int, event: Event) -> None:
        if seq > self.position:
            self._events[seq] = event

    def take(self, seq: int) -> Event | None:
        return self._events.pop(seq, None) if self._events else None

    def passed(self, position: int) -> None:
        """The fold has reached ``position``: nothing at or before it will come back (an
        append outside the fold's filters, or one folded before its PubAck was read)."""
        self.position = position
        events = self._events
        while events:
            first = next(iter(events))
            if first > position:
                return
            del events[first]
