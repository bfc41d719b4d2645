"""The validation score that picks the best epoch: one metric, or a weighted sum of several (``auc-logloss``).

``Trainer(monitor=...)`` takes the name of a metric the evaluator reports (``ndcg@10``, ``auc``,
``hr@10[sampled-100]``) or a sum of such names with optional weights: ``auc-logloss``, ``auc - 2*logloss``,
``0.5*recall@20 + ndcg@10``. The sum is compared under ``Trainer(mode=...)`` like a single metric, and is
written into the validation rows under the monitor's own text, so ``metrics.csv`` shows what was compared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from recsys.errors import ConfigError

__all__ = ["Monitor"]

_NAME = r"[A-Za-z_][\w@.]*(?:\[[^\]\s]*\])?"  # ndcg@10, logloss, hr@10[sampled-100]
_NUMBER = r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?"
_TERM = re.compile(rf"\s*(?P<sign>[+-]?)\s*(?:(?P<weight>{_NUMBER})\s*\*\s*)?(?P<name>{_NAME})\s*")


@dataclass(frozen=True)
class Monitor:
    """A parsed ``trainer.monitor``: ``terms`` are ``(weight, metric name)`` pairs whose sum is the score.

    >>> m = Monitor.parse("auc - 2*logloss")
    >>> m.terms, m.names, m.value({"auc": 0.8, "logloss": 0.25})
    (((1.0, 'auc'), (-2.0, 'logloss')), ['auc', 'logloss'], 0.30000000000000004)
    >>> Monitor.parse("hr@10[sampled-100]").terms
    ((1.0, 'hr@10[sampled-100]'),)
    """

    text: str
    terms: tuple[tuple[float, str], ...]

    @classmethod
    def parse(cls, text: str) -> Monitor:
        """The terms of ``text``; a :class:`ConfigError` naming the expected form when it is not one."""
        terms, position = [], 0
        while isinstance(text, str) and position < len(text):
            match = _TERM.match(text, position)
            if match is None or match.end() == position or (terms and not match["sign"]):
                break
            weight = float(match["weight"]) if match["weight"] else 1.0
            terms.append((-weight if match["sign"] == "-" else weight, match["name"]))
            position = match.end()
        if not isinstance(text, str) or not terms or position != len(text):
            raise ConfigError(f"trainer.monitor {text!r} is neither a metric name nor a sum of them", where="trainer.monitor",
                              fix="name one validation metric (auc, ndcg@10) or a weighted sum such as auc-logloss "
                                  "or 'auc - 2*logloss'")
        return cls(text, tuple(terms))

    @property
    def names(self) -> list[str]:
        """The metric names the score reads."""
        return [name for _, name in self.terms]

    @property
    def combined(self) -> bool:
        """True when the score is more than one metric as it is."""
        return self.terms != ((1.0, self.text.strip()),)

    def value(self, metrics: Mapping[str, float]) -> float:
        """The score of one validation row (every named metric must be in it)."""
        return sum(weight * float(metrics[name]) for weight, name in self.terms)
