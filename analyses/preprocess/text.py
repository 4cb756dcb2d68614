"""Text columns split into tokens by a regular expression."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field, field_validator

from raysight.analyses.columns import require_columns
from raysight.analyses.preprocess.checks import as_text, is_text, polars_message, require_new
from raysight.errors import InputError
from raysight.plugins import PluginConfig, Preprocessor

__all__ = ["TextTokenization", "TextTokenizationConfig"]


def _regex_problem(pattern: str) -> str | None:
    try:
        matches_empty = pl.Series([""]).str.contains(pattern).item()
    except pl.exceptions.PolarsError as exc:
        return f"invalid regular expression {pattern!r}: {polars_message(exc)}"
    return f"pattern {pattern!r} matches an empty token" if matches_empty else None


class TextTokenizationConfig(PluginConfig):
    """Split a text column into tokens."""

    op: Literal["text_tokenization"] = "text_tokenization"
    column: str = Field(min_length=1)
    #: lower-case the text (and the stop words) first
    lowercase: bool = True
    #: a token (Rust regex syntax, Unicode-aware: \w matches 東京 and ü); must not match ""
    pattern: str = Field(default=r"\w+", min_length=1)
    #: tokens to leave out (compared after lower-casing when lowercase is on)
    stop_words: list[str] = Field(default_factory=list)

    @field_validator("pattern")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        problem = _regex_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class TextTokenization(Preprocessor[TextTokenizationConfig]):
    """The table with ``{column}_tokens`` (List[String]) and ``{column}_token_count`` (Int64).

    Tokens are the non-overlapping matches of ``pattern`` from left to right (Polars
    ``str.extract_all``), minus the stop words. A null text gives null tokens and a null
    count; an empty text gives an empty list and 0.
    """

    name: ClassVar[str] = "text_tokenization"
    Config = TextTokenizationConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        column = self.config.column
        require_columns(df.columns, [column])
        dtype = df.schema[column]
        if not (is_text(dtype) or dtype == pl.Null):
            raise InputError(
                f"text_tokenization needs a string column; column {column!r} is {dtype}",
                column=column,
                dtype=str(dtype),
            )
        tokens_name, count_name = f"{column}_tokens", f"{column}_token_count"
        require_new("text_tokenization", df.columns, [tokens_name, count_name])
        text = as_text(column, dtype).cast(pl.String)
        stop = self.config.stop_words
        if self.config.lowercase:
            text = text.str.to_lowercase()
            stop = [w.lower() for w in stop]
        tokens = text.str.extract_all(self.config.pattern)
        if stop:
            tokens = tokens.list.eval(pl.element().filter(~pl.element().is_in(stop)))
        return df.with_columns(tokens.alias(tokens_name)).with_columns(
            pl.col(tokens_name).list.len().cast(pl.Int64).alias(count_name)
        )
