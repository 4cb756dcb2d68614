"""Word counts of a text column.

::

    TextFrequency(TextFrequency.Config(column="review", stop_words="english", top_n=20)).run(df)

Across partitions it is mergeable: token counts per partition, summed per word.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field, field_validator

from raysight.analyses.columns import as_frame, require_columns, stack
from raysight.errors import InputError
from raysight.plugins import Analysis, AnalysisResult, PluginConfig
from raysight.tables import to_arrow

__all__ = ["ENGLISH_STOP_WORDS", "TextFrequency", "TextFrequencyConfig"]

#: a small list of English function words for ``stop_words: english`` (lower case)
ENGLISH_STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves
    """.split()
)



class TextFrequencyConfig(PluginConfig):
    """``{type: text_frequency, column, top_n?, lowercase?, pattern?, stop_words?}``."""

    type: Literal["text_frequency"] = "text_frequency"
    column: str = Field(min_length=1)
    #: keep only the N most frequent words; None keeps all
    top_n: int | None = Field(default=None, ge=1)
    lowercase: bool = True
    #: a token is a match of this regular expression (Rust ``regex`` syntax); the default is a
    #: run of Unicode letters and digits, so "Zürich" and "東京" are single tokens
    pattern: str = Field(default=r"[^\W_]+", min_length=1)
    #: words to leave out: a list, or ``english`` for :data:`ENGLISH_STOP_WORDS`; compared after
    #: lower-casing when ``lowercase`` is set
    stop_words: list[str] | Literal["english"] | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            pl.Series([""], dtype=pl.String).str.extract_all(value)
        except pl.exceptions.PolarsError as err:
            first = str(err).strip().splitlines()
            raise ValueError(f"not a valid regular expression: {' '.join(first[:4])}") from None
        return value


class TextFrequency(Analysis[TextFrequencyConfig]):
    """How often each word occurs in a text column.

    Tokens are the matches of ``pattern`` in each value (lower-cased first when ``lowercase``);
    empty matches and stop words are dropped. Result table: ``word`` (String) and ``count``
    (Int64), sorted by count descending then word ascending, at most ``top_n`` rows. Summary:
    ``column``, ``total_tokens`` and ``unique_words`` (after stop words, before ``top_n``),
    ``documents`` (non-null values) and ``row_count``.

    Distributed: per-partition word counts, summed per word (mergeable).
    """

    name: ClassVar[str] = "text_frequency"
    Config = TextFrequencyConfig

    def output_columns(self) -> list[str]:
        return ["word", "count"]

    def required_columns(self) -> list[str]:
        return [self.config.column]

    def _stop_words(self) -> list[str]:
        words = self.config.stop_words
        if words is None:
            return []
        listed = sorted(ENGLISH_STOP_WORDS) if words == "english" else list(words)
        return [w.lower() for w in listed] if self.config.lowercase else listed

    def partial(self, df: pl.DataFrame) -> dict[str, Any]:
        """Word counts of the partition (columns ``word``, ``count``)."""
        column = self.config.column
        require_columns(list(df.schema.names()), [column])
        dtype = df.schema[column]
        if not isinstance(dtype, (pl.String, pl.Categorical, pl.Enum, pl.Null)):
            raise InputError(
                f"{self.name}: column {column!r} is {dtype}, not a text column",
                column=column,
                dtype=str(dtype),
            )
        text = pl.col(column).cast(pl.String)
        if self.config.lowercase:
            text = text.str.to_lowercase()
        word = pl.col("word")
        keep = word.is_not_null() & (word != "")
        stop = self._stop_words()
        if stop:
            keep &= ~word.is_in(pl.Series(stop, dtype=pl.String).implode())
        counts = (
            df.lazy()
            .select(text.str.extract_all(self.config.pattern).explode().alias("word"))
            .filter(keep)
            .group_by("word")
            .agg(pl.len().cast(pl.Int64).alias("count"))
            .collect()
        )
        documents = df.get_column(column).count()
        return {"row_count": df.height, "documents": documents, "counts": counts.to_arrow()}

    def merge(self, partials: list[dict[str, Any]]) -> dict[str, Any]:
        """One partial state holding the merge of ``partials`` (associative)."""
        if not partials:
            raise ValueError("combine needs the state of at least one partition")
        counts = (
            stack([p["counts"] for p in partials])
            .group_by("word")
            .agg(pl.col("count").sum())
        )
        return {
            "row_count": sum(p["row_count"] for p in partials),
            "documents": sum(p["documents"] for p in partials),
            "counts": counts.to_arrow(),
        }

    def finalize(self, state: dict[str, Any]) -> AnalysisResult:
        """The result from one (merged) partial state."""
        counts = (
            as_frame(state["counts"])
            .select(pl.col("word").cast(pl.String), pl.col("count").cast(pl.Int64))
            .sort(["count", "word"], descending=[True, False])
        )
        top = counts.head(self.config.top_n) if self.config.top_n else counts
        summary = {
            "column": self.config.column,
            "total_tokens": int(counts.get_column("count").sum()),
            "unique_words": counts.height,
            "documents": int(state["documents"]),
            "row_count": int(state["row_count"]),
        }
        return AnalysisResult(kind=self.name, table=to_arrow(top), summary=summary)
