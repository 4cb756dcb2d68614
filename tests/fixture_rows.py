"""The rows every connector test writes to its backend and reads back: unicode, NULLs (the
last row is all NULL), edge values, decimals, zoned timestamps and binary."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

TZ = dt.timezone(dt.timedelta(hours=2))

ROWS: list[dict[str, Any]] = [
    {"id": i,
     "n": [0, -7, 2**31 - 1, 42, -2**31, 3, 5, 8, 13, 21][i],
     "price": decimal.Decimal(["0.00", "-1.25", "99999.99", "3.10", "7.77", "0.01", "12.50",
                               "1.00", "2.22", "5.55"][i]),
     "ratio": [0.5, -1e300, 1e-300, 2.25, 0.0, 3.5, -0.125, 1.0, 9.75, 6.0][i],
     "name": ["plain", "Grüße", "東京", "naïve café", "", "emoji 🎉", "it's", "a\"b",
              "tab\tnew\nline", "Zürich"][i],
     "flag": i % 2 == 0,
     "day": dt.date(2024, 1, 1) + dt.timedelta(days=7 * i),
     "at": dt.datetime(2024, 1, 1, 12, 30, tzinfo=TZ) + dt.timedelta(days=i, microseconds=i),
     "raw": bytes([0, 255, i]) * (i + 1)}
    for i in range(10)
] + [{"id": 10, **dict.fromkeys(["n", "price", "ratio", "name", "flag", "day", "at", "raw"])}]
COLUMNS = list(ROWS[0])
