"""Which columns there are and what they are called: select (or drop) and rename."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field, field_validator

from raysight.analyses.columns import Names, listed_once, require_columns
from raysight.errors import InputError
from raysight.plugins import PluginConfig, Preprocessor

__all__ = ["Rename", "RenameConfig", "SelectColumns", "SelectColumnsConfig"]


class SelectColumnsConfig(PluginConfig):
    """Keep (or drop) a list of columns."""

    op: Literal["select_columns"] = "select_columns"
    columns: Names = Field(min_length=1)
    #: True keeps the columns in the listed order; False drops them
    include: bool = True


class SelectColumns(Preprocessor[SelectColumnsConfig]):
    """The listed columns in the listed order, or every other column when ``include`` is False."""

    name: ClassVar[str] = "select_columns"
    Config = SelectColumnsConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        require_columns(df.columns, self.config.columns)
        if self.config.include:
            return df.select(self.config.columns)
        return df.drop(self.config.columns)


class RenameConfig(PluginConfig):
    """Rename columns."""

    op: Literal["rename"] = "rename"
    #: old name -> new name; names may be swapped ({a: b, b: a})
    columns: dict[str, str] = Field(min_length=1)

    @field_validator("columns")
    @classmethod
    def _distinct_targets(cls, value: dict[str, str]) -> dict[str, str]:
        if any(not new for new in value.values()):
            raise ValueError("a new column name must not be empty")
        listed_once(list(value.values()), "the new names")
        return value


class Rename(Preprocessor[RenameConfig]):
    """The table with columns renamed; a missing column or a name clash is an InputError."""

    name: ClassVar[str] = "rename"
    Config = RenameConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        mapping = self.config.columns
        require_columns(df.columns, mapping)
        renamed = [mapping.get(c, c) for c in df.columns]
        clash = next((n for n in renamed if renamed.count(n) > 1), None)
        if clash is not None:
            raise InputError(
                f"rename would give two columns the name {clash!r}; rename or drop the other",
                column=clash,
            )
        return df.rename(mapping)
