"""Published numbers to set beside ours, each with where it comes from and the protocol it was measured under.

Only numbers cited in this repository (README "Measured here", ``../shared/BASELINES.md``,
``conf/model/sasrec_ce.yaml``) are listed; a number measured under another protocol is not comparable
digit for digit, which is why every row carries its protocol. ``BASELINES.md`` cites no BARS numbers,
so there are none here.

>>> [(r.model, r.metric, r.value) for r in references_for("amazon-beauty")]
[('ICLRec', 'hr@10', 0.0744), ('ICLRec', 'ndcg@10', 0.0403)]
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Reference:
    """One published number: ``value`` of ``metric`` for ``model`` on ``dataset``.

    ``ours`` is the row label of our model it is set beside; ``approximate`` marks a number cited as
    "about" / "~" (read off a figure or rounded), not a table entry.
    """

    dataset: str
    model: str
    metric: str
    value: float
    source: str
    protocol: str
    ours: str | None = None
    approximate: bool = False


_ICLREC_PROTOCOL = "leave-last-out by time, full ranking over all items (seen items masked)"
_ICLREC_SOURCE = "ICLRec (Chen et al., WWW 2022), repository README, as cited in BASELINES.md"

REFERENCES: tuple[Reference, ...] = (
    Reference("amazon-beauty", "ICLRec", "hr@10", 0.0744, _ICLREC_SOURCE, _ICLREC_PROTOCOL, ours="sasrec_ce"),
    Reference("amazon-beauty", "ICLRec", "ndcg@10", 0.0403, _ICLREC_SOURCE, _ICLREC_PROTOCOL, ours="sasrec_ce"),
    Reference("ml-1m", "SASRec+CE", "ndcg@10", 0.18, "Klenitskiy & Vasilev 2023, \"Turning Dross Into Gold Loss\"",
              "leave-one-out, full ranking; max_len 200 (conf/model/sasrec_ce.yaml)", ours="sasrec_ce", approximate=True),
    Reference("ml-100k", "Surprise SVD", "rmse", 0.93, "Surprise library benchmark, as cited in README",
              "explicit ratings, 5-fold cross-validation RMSE", ours="biased_mf", approximate=True),
)


def references_for(dataset: str | None = None) -> tuple[Reference, ...]:
    """The published rows for ``dataset`` (all of them when ``None``)."""
    return tuple(r for r in REFERENCES if dataset is None or r.dataset == dataset)


def references_frame(dataset: str | None = None) -> pl.DataFrame:
    """:func:`references_for` as a polars frame, one row per number.

    >>> references_frame("ml-100k").select("model", "metric", "value").row(0)
    ('Surprise SVD', 'rmse', 0.93)
    """
    schema = {"dataset": pl.String, "model": pl.String, "metric": pl.String, "value": pl.Float64, "source": pl.String,
              "protocol": pl.String, "ours": pl.String, "approximate": pl.Boolean}
    rows = [{name: getattr(r, name) for name in schema} for r in references_for(dataset)]
    return pl.DataFrame(rows, schema=schema)
