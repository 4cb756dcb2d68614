"""The configs of the relational nodes of a job graph: joins and unions.

::

    JoinConfig(left="orders", right="customers", left_on=["customer_id"], right_on=["id"],
               how="left")
    JoinConfig(left="trades", right="quotes", on=["time"], how="asof",
               asof=AsofOptions(by=["ticker"], direction="backward", tolerance="5m"))
    UnionConfig(inputs=["sales_2023", "sales_2024"])

Keys are named once per side: ``on`` when both sides call them the same, otherwise
``left_on``/``right_on`` of the same length (the i-th left key matches the i-th right key).
An as-of join has exactly one key, the sorted one, in those same fields; its ``by`` keys (equal
matches first) are in :class:`AsofOptions`. Which columns the result has is described in
:mod:`raysight.analyses.relational.plan`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from raysight.analyses.columns import Names
from raysight.analyses.temporal import parse_duration
from raysight.plugins import PluginConfig

__all__ = ["AsofOptions", "How", "JoinConfig", "Side", "Strategy", "UnionConfig"]

How = Literal["inner", "left", "right", "full", "semi", "anti", "asof"]
Strategy = Literal["auto", "broadcast", "shuffle"]
Side = Literal["left", "right"]


class AsofOptions(PluginConfig):
    """How an as-of join matches: equal ``by`` keys, then the nearest sorted key."""

    #: keys that must be equal on both sides (same names on both); a null never matches
    by: Names | None = None
    #: ``by`` keys of the left side, when the sides name them differently
    by_left: Names | None = None
    #: ``by`` keys of the right side, matched in order with ``by_left``
    by_right: Names | None = None
    #: backward: the last right key <= the left key; forward: the first >= it; nearest: either
    direction: Literal["backward", "forward", "nearest"] = "backward"
    #: the largest distance of a match: a number for numeric keys, a duration ("5m", "1h",
    #: "2d") for date and datetime keys; None: no limit
    tolerance: int | float | str | None = None

    @field_validator("tolerance")
    @classmethod
    def _tolerance_is_a_distance(cls, value: int | float | str | None) -> int | float | str | None:
        if isinstance(value, str):
            parse_duration(value, weeks=True)
        elif value is not None and not value >= 0:
            raise ValueError(f"tolerance must be >= 0, not {value!r}")
        return value

    @model_validator(mode="after")
    def _by_keys_named_one_way(self) -> AsofOptions:
        if self.by is not None and (self.by_left is not None or self.by_right is not None):
            raise ValueError("give either by or by_left/by_right, not both")
        if (self.by_left is None) != (self.by_right is None):
            raise ValueError("by_left and by_right go together")
        if self.by_left is not None and len(self.by_left) != len(self.by_right or []):
            raise ValueError(f"by_left names {len(self.by_left)} keys but by_right "
                             f"{len(self.by_right or [])}")
        return self

    @property
    def left_by(self) -> list[str]:
        """The left side's ``by`` keys (empty without any)."""
        return list(self.by if self.by is not None else self.by_left or [])

    @property
    def right_by(self) -> list[str]:
        """The right side's ``by`` keys, in the order of :attr:`left_by`."""
        return list(self.by if self.by is not None else self.by_right or [])


class JoinConfig(PluginConfig):
    """A join of two nodes of the job graph on key columns."""

    #: the node whose rows are the left side
    left: str = Field(min_length=1)
    #: the node whose rows are the right side
    right: str = Field(min_length=1)
    #: key columns named the same on both sides
    on: Names | None = Field(default=None, min_length=1)
    #: key columns of the left side, when the sides name them differently
    left_on: Names | None = Field(default=None, min_length=1)
    #: key columns of the right side, matched in order with ``left_on``
    right_on: Names | None = Field(default=None, min_length=1)
    #: inner, left, right, full (outer), semi, anti or asof; null keys never match
    how: How = "inner"
    #: added to a right column whose name a left column already has
    suffix: str = Field(default="_right", min_length=1)
    #: the as-of options; required when how is asof, not allowed otherwise
    asof: AsofOptions | None = None
    #: auto: broadcast a side below the measured size threshold, else shuffle both by key
    strategy: Strategy = "auto"

    @model_validator(mode="after")
    def _keys_and_options_agree(self) -> JoinConfig:
        if self.on is not None and (self.left_on is not None or self.right_on is not None):
            raise ValueError("give either on or left_on/right_on, not both")
        if self.on is None and (self.left_on is None or self.right_on is None):
            raise ValueError("the keys are missing: give on, or both left_on and right_on")
        if len(self.left_keys) != len(self.right_keys):
            raise ValueError(f"left_on names {len(self.left_keys)} keys but right_on "
                             f"{len(self.right_keys)}")
        if self.how == "asof":
            if self.asof is None:
                raise ValueError("how 'asof' needs the asof options (at least {})")
            if len(self.left_keys) != 1:
                raise ValueError("an as-of join has one sorted key (on, or left_on/right_on); "
                                 "put the keys that must be equal in asof.by")
        elif self.asof is not None:
            raise ValueError(f"asof options are for how 'asof', not {self.how!r}")
        if self.strategy == "broadcast" and self.how == "full":
            raise ValueError("a full join cannot broadcast either side: use strategy "
                             "'shuffle' or 'auto'")
        return self

    @property
    def left_keys(self) -> list[str]:
        """The key columns of the left side."""
        return list(self.on if self.on is not None else self.left_on or [])

    @property
    def right_keys(self) -> list[str]:
        """The key columns of the right side, in the order of :attr:`left_keys`."""
        return list(self.on if self.on is not None else self.right_on or [])

    @property
    def key_fields(self) -> tuple[str, str]:
        """The config fields that name the keys of the left and the right side."""
        return ("on", "on") if self.on is not None else ("left_on", "right_on")


class UnionConfig(PluginConfig):
    """The rows of several nodes one below the other, columns matched by name."""

    #: the nodes to concatenate, in this order; a column missing from one is null there
    inputs: Names = Field(min_length=2)
    #: drop duplicate rows (as SQL UNION; nulls equal), keeping the first of each
    distinct: bool = False
