"""The one exception type for user mistakes: the CLI prints it as one line."""


class UserError(Exception):
    """A problem the user can fix: bad file, bad flag, mismatched data.

    The message names the file (when there is one) and the fix, on one line.
    """

    def __init__(self, problem: str, *, path=None, fix: str | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        self.fix = fix
        parts = [f"{self.path}: {problem}" if self.path else problem]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" -- ".join(p.replace("\n", " ") for p in parts))


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's first message line (or its type name when it has none), for a one-line error."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
