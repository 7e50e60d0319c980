"""The default backend: messages are written to the console (standard output)."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from scheduling.notify import Message, masked


class ConsoleBackend:
    dedupes_by_key = False
    # Worker threads and the embedded server may write at once; keep messages whole.
    _lock = threading.Lock()

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, message: Message) -> str:
        # The recipient is masked: the console is a log in all but name.
        header = f"--- {message.channel} to {masked(message.to)}"
        if message.subject:
            header += f": {message.subject}"
        with self._lock:
            self.stream.write(f"{header}\n{message.body}\n")
            self.stream.flush()
        return f"console:{message.key}"
