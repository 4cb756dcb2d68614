"""``raysight manager ...``: start, stop and talk to a cluster's job manager
(:mod:`raysight.service.manager`), and ``raysight run``'s way through it."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1


def add_manager_commands(sub: Any, connection_arguments: Callable[[Any], None]) -> None:
    """The ``manager`` command and its subcommands."""
    from raysight.service.manager import DEFAULT_MAX_CONCURRENT, MANAGER_NAME

    manager = sub.add_parser("manager", help="the cluster's job manager: a queue with "
                                             "priorities, a concurrency cap and preemption")
    actions = manager.add_subparsers(dest="action", required=True,
                                     parser_class=type(manager))

    def action(name: str, text: str, job: bool = False) -> Any:
        parser = actions.add_parser(name, help=text)
        if job:
            parser.add_argument("job_id")
        connection_arguments(parser)
        parser.add_argument("--name", default=MANAGER_NAME,
                            help=f"the manager's actor name (default {MANAGER_NAME})")
        parser.add_argument("--json", action="store_true", help="print JSON")
        return parser

    start = action("start", "start the job manager (a detached actor) unless it runs")
    start.add_argument("--run-dir", default=None,
                       help="where its records and the jobs' run folders go: a path the "
                            "cluster shares or an fsspec URL (default: RAYSIGHT_RUN_DIR, "
                            "else ~/raysight-runs)")
    start.add_argument("--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT,
                       help=f"jobs run at once at most (default {DEFAULT_MAX_CONCURRENT})")
    start.add_argument("--ship-raysight", action="store_true",
                       help="carry this raysight to the cluster in the manager's runtime "
                            "environment (where the cluster has no raysight installed)")
    action("stop", "stop the job manager (running jobs resume when it starts again)")
    action("stats", "the manager's scheduler statistics")
    listing = action("list", "the manager's jobs, in submission order")
    listing.add_argument("--state", action="append", default=[],
                         help="only jobs in this state (repeatable)")
    action("status", "one job's record", job=True)
    wait = action("wait", "wait for a job to end; exit with its status", job=True)
    wait.add_argument("--timeout", type=float, default=None, metavar="S")
    for name, text in (("cancel", "cancel a job (a running one stops its tasks)"),
                       ("pause", "hold a job back (a running one stops at a step boundary)"),
                       ("resume", "put a paused job back in the queue")):
        action(name, text, job=True)


def manager_command(args: argparse.Namespace) -> int:
    import os

    from raysight.cluster import connect
    from raysight.errors import InputError
    from raysight.service import manager as mgr

    if not (args.address or os.environ.get("RAY_ADDRESS")):
        raise InputError("the job manager lives on a Ray cluster: give its --address (or "
                         "RAY_ADDRESS); an embedded local Ray would end with this command")
    runtime_env = None
    if getattr(args, "ship_raysight", False):
        from raysight.service.runtime_env import raysight_py_modules

        runtime_env = {"py_modules": raysight_py_modules()}
    connect(args.address, timeout_s=args.connect_timeout, log_level=args.log_level,
            runtime_env=runtime_env)
    if args.action == "start":
        from raysight.service.jobs_api import default_run_dir

        client = mgr.start_manager(args.run_dir or default_run_dir(), args.max_concurrent,
                                   args.name, ship_raysight=args.ship_raysight)
        stats = client.stats()
        _print(args, stats, [f"job manager {args.name} running: at most "
                             f"{stats['max_concurrent']} jobs at once, records and runs "
                             f"under {stats['run_dir']}",
                             f"{stats['pending_count']} waiting, "
                             f"{stats['running_count'] + stats['queued_count']} running"])
        return EXIT_OK
    if args.action == "stop":
        running = mgr.stop_manager(args.name)
        print(f"job manager {args.name} stopped"
              + (f"; its {running} running jobs stopped with it and resume when it starts "
                 "again" if running else ""))
        return EXIT_OK
    client = mgr.connect_manager(args.name)
    if args.action == "stats":
        stats = client.stats()
        _print(args, stats, [f"{k:24} {_value(v)}" for k, v in stats.items()])
        return EXIT_OK
    if args.action == "list":
        records = client.list([s.upper() for s in args.state])
        _print(args, records, mgr.table(records))
        return EXIT_OK
    if args.action == "wait":
        record = client.wait(args.job_id, args.timeout)
        _print(args, record, mgr.describe(record))
        return exit_status(record)
    record = getattr(client, args.action)(args.job_id)
    _print(args, record, mgr.describe(record))
    return EXIT_OK


def exit_status(record: dict[str, Any]) -> int:
    """The exit status ``raysight run`` gives for a job that ended this way."""
    from raysight.service.manager import TERMINAL

    state = record.get("job_state") or record["state"]
    return {"COMPLETED": 0, "COMPLETED_WITH_ERRORS": 3, "CANCELED": 130}.get(
        state, EXIT_FAILED if record["state"] in TERMINAL else 124)


def run_managed(job: Any, client: Any, connections: str | None,
                run_dir: str | None = None) -> Any:
    """``raysight run`` through the job manager: queue the job (its run folder under
    ``run_dir``, else the manager's), wait for it, and cancel it when this process is
    stopped (Ctrl-C, or SIGTERM from a Jobs API stop). Returns the job's result."""
    import os

    if connections is not None:  # the manager's drivers read it from elsewhere
        connections = os.path.abspath(connections)
    job_id = client.submit(job, run_dir=run_dir, connections=connections)
    record = client.status(job_id)
    print(f"raysight: job {job_id} queued in the job manager (priority {record['priority']}); "
          f"`raysight manager status {job_id}` shows it", file=sys.stderr)
    try:
        with _sigterm_interrupts():
            client.wait(job_id)
    except KeyboardInterrupt:
        print(f"raysight: cancelling job {job_id} in the job manager", file=sys.stderr)
        with contextlib.suppress(Exception):
            client.cancel(job_id)
        client.wait(job_id, timeout_s=60)
    return client.result(job_id, timeout_s=0)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else "\n".join(lines))


def _value(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)
