"""``python -m raysight``: the command line, as Ray's Jobs API entrypoints call it."""

from raysight.cli import main

raise SystemExit(main())
