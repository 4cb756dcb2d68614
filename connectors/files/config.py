"""What a file source says: its path, format, CSV dialect and partition size."""

from __future__ import annotations

import codecs
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raysight.connectors.files.hive import HiveType
from raysight.plugins import PluginConfig

MiB = 1 << 20

Format = Literal["csv", "json", "ndjson", "parquet", "avro", "ipc", "orc", "excel"]

#: file name extension -> format, used when ``format`` is not given
EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".jsonl": "ndjson",
    ".ndjson": "ndjson",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".avro": "avro",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
    ".orc": "orc",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xlsb": "excel",
    ".xls": "excel",
    ".ods": "excel",
}


def format_names() -> str:
    """The formats a source may name, for messages: ``csv, json, ... or excel``."""
    names = list(get_args(Format))
    return f"{', '.join(names[:-1])} or {names[-1]}"


def extension_names() -> str:
    """The extensions that imply a format, for messages: ``.csv, .tsv, ... or .ods``."""
    names = list(EXTENSIONS)
    return f"{', '.join(names[:-1])} or {names[-1]}"


_DEFAULT_NULLS = ["", "NA", "N/A", "null", "NULL"]
class CsvOptions(BaseModel):
    """How CSV text is parsed (the defaults read what Polars and pandas write)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    #: one character; None means a tab for ``.tsv`` files, otherwise the one of ``,`` ``;``
    #: tab ``|`` that splits the first lines of the source's first file alike (else ``,``)
    delimiter: str | None = None
    #: the first line holds the column names; without it columns are named f0, f1, ...
    header: bool = True
    #: one character, or None when fields are never quoted
    quote_char: str | None = '"'
    #: field values read as null (also in string columns, and also when quoted)
    null_values: list[str] = Field(default_factory=lambda: list(_DEFAULT_NULLS))
    encoding: str = "utf-8"
    #: quoted fields may hold line breaks (slower to parse; such files are never split)
    newlines_in_values: bool = False

    @field_validator("delimiter", "quote_char")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"must be exactly one character, got {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value


class ExcelOptions(BaseModel):
    """Which sheet of a workbook is read, and whether its first row names the columns."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    #: a sheet name, or its position (0 is the first sheet)
    sheet: str | int = 0
    #: the first row holds the column names; without it columns are named f0, f1, ...
    header: bool = True

    @field_validator("sheet")
    @classmethod
    def _not_negative(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"a sheet index counts from 0, got {value}")
        return value


class FileSourceConfig(PluginConfig):
    """A file, a folder or a glob of CSV, JSON, NDJSON, Parquet, Avro, Arrow IPC, ORC or Excel
    files.

    ``format`` None takes the format from the file extension (:data:`EXTENSIONS`: .csv/.tsv/
    .txt -> csv, .json -> json, .jsonl/.ndjson -> ndjson, .parquet/.pq -> parquet, .avro ->
    avro, .arrow/.feather/.ipc -> ipc, .orc -> orc, .xlsx/.xlsm/.xlsb/.xls/.ods -> excel; a
    compression suffix such as .gz, .bz2, .xz or .zst is looked through; a folder from the
    extensions of its files). A folder skips files whose name starts with ``.`` or ``_``
    (``_SUCCESS``, ``.crc``); with ``recursive`` it includes subfolders (a glob says so
    itself, with ``**``). A relative local path is resolved where ``check``/``plan`` run.
    """

    type: Literal["file"] = "file"
    path: str = Field(min_length=1)
    format: Format | None = None
    csv: CsvOptions | None = None
    excel: ExcelOptions | None = None
    #: target bytes per partition; a larger file is split (see ``split_files``)
    partition_bytes: int = Field(default=64 * MiB, gt=0)
    #: split files larger than ``partition_bytes``; turn off for CSV with newlines in quotes
    split_files: bool = True
    recursive: bool = False
    #: read ``key=value`` folders as columns (see :mod:`.hive`): None when every file lies in
    #: such folders, True to require it, False never
    hive: bool | None = None
    #: the types of partition columns (int64, float64, date, bool, string); by default the
    #: narrowest that reads every folder's value
    hive_types: dict[str, HiveType] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _csv_options_need_csv(self) -> FileSourceConfig:
        if self.csv is not None and self.format not in (None, "csv"):
            raise ValueError(f"`csv` options apply to format csv, not {self.format}")
        if self.excel is not None and self.format not in (None, "excel"):
            raise ValueError(f"`excel` options apply to format excel, not {self.format}")
        return self
