"""Errors raised by the embedded engines launcher."""


class EngineError(RuntimeError):
    """An embedded engine could not be started; the message carries the tail of its log."""

    def __init__(self, engine: str, message: str, *, log_tail: str = "") -> None:
        self.engine = engine
        self.log_tail = log_tail
        text = f"{engine}: {message}"
        if log_tail:
            text += f"\n--- last lines of the {engine} log ---\n{log_tail}"
        super().__init__(text)
