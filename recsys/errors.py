"""User-facing errors: each says what went wrong, where, and how to fix it."""

from __future__ import annotations


class RecsysError(Exception):
    """An error caused by input the user can fix (data, config, checkpoint).

    >>> str(RecsysError("ratings contain NaN", where="ratings.csv, column 'rating'", fix="drop or fill them"))
    "ratings contain NaN\\n  where: ratings.csv, column 'rating'\\n  fix: drop or fill them"
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what, self.where, self.fix = what, where, fix
        lines = [what]
        if where:
            lines.append(f"  where: {where}")
        if fix:
            lines.append(f"  fix: {fix}")
        super().__init__("\n".join(lines))


class DataError(RecsysError, ValueError):
    """Bad or missing data: files, columns, values, unknown ids."""


class ConfigError(RecsysError, ValueError):
    """Bad configuration: unknown keys, invalid values."""


class CheckpointError(RecsysError, ValueError):
    """A checkpoint that is missing, corrupt or does not match the model."""
