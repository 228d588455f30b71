"""One exception family for everything a user can get wrong; the CLI maps it to exit code 2."""

from __future__ import annotations

from collections.abc import Callable


def printable(text: str) -> str:
    """``text`` with control, format and line/paragraph separator characters escaped
    (\\n, \\x1b, \\u2028, ...), so that a message stays one line and a name cannot
    start a line of its own."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


class EqpropError(Exception):
    """Base of all errors meant for the user (bad file, bad option, bad data).

    A message about parameters of a library call names each as ``{name}`` and lists
    the names in ``params``: the library's message spells them as they are
    (``variation 0.5: expected ...``); the CLI spells them as its options
    (``--variation 0.5: ...``), so that no library message names a command-line flag.
    """

    template: str = ""
    params: tuple[str, ...] = ()

    def __init__(self, message: str = "", *, params: tuple[str, ...] = ()):
        self.template, self.params = message, params
        super().__init__(self.spelled(str) if params else message)

    def spelled(self, spell: Callable[[str], str]) -> str:
        """The message with each parameter it names spelled by ``spell``."""
        text = self.template
        for name in self.params:
            text = text.replace("{" + name + "}", spell(name))
        return text


class CircuitError(EqpropError):
    """A circuit file is invalid: says where (file, line, key path) and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        key: str = "",
        line: int | None = None,
        params: tuple[str, ...] = (),
    ):
        self.file = path
        self.key = key
        self.line = line
        self.reason = message
        super().__init__(self._format(), params=params)

    def _format(self) -> str:
        where = self.file or "<circuit>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" `{self.key}`" if self.key else ""
        return printable(f"{where}:{key} {self.reason}")


class UnknownKeyError(CircuitError):
    """A key that the circuit does not have (a misspelt name, an index past the end, a key
    below a value): wrong whatever its value, unlike a value out of range."""


class InputError(EqpropError):
    """Input vectors or command-line options that do not fit the circuit."""


class NotConvergedError(EqpropError):
    """An equilibrium missed its tolerances where a result is needed (exit code 3).

    ``state``, when set, is what to save before stopping (training's last complete batch);
    ``run_dir``, the run directory that holds it once saved.
    """

    exit_code = 3

    def __init__(self, message: str, state: object = None, run_dir: object = None):
        super().__init__(message)
        self.state = state
        self.run_dir = run_dir
