"""The ``raysight`` command line: run, validate, resume, inspect, schema; submit, status, logs,
cancel and list for jobs on a Ray cluster through its Jobs API (:mod:`raysight.service.jobs_api`);
``manager ...`` for the cluster's job manager (:mod:`raysight.service.manager_cli`); ``cluster``
for the platform's status (:mod:`raysight.service.cluster_status`).

Exit status: 0 when the job completed, 1 when it failed, 2 for an invalid spec, a bad file,
bad arguments, a cluster that cannot be reached or resources no node of it has (a one-line
message naming the field, file, address or resource, no traceback), 3 when it completed but
some export could not be written (the others were), 130 when it was stopped (Ctrl-C, or
SIGTERM from a Jobs API stop). ``submit --wait`` ends with the submitted job's own status
(130 when it was cancelled).

Run folders go under ``--run-dir``, else ``RAYSIGHT_RUN_DIR``, else ``./runs``; a driver that
Ray's Jobs API started in its package folder (``_ray_pkg_*``, deleted with the session) uses
``~/raysight-runs`` instead and never writes inside that folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from raysight.cluster import DEFAULT_CONNECT_TIMEOUT_S, connect
from raysight.errors import InputError
from raysight.service.cluster_status import add_cluster_command, cluster_command

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 as well, with our prefix
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"raysight: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raysight", description="Ray-backed parallel data analysis jobs.")
    parser.add_argument("--log-level", default=os.environ.get("RAYSIGHT_LOG_LEVEL", "WARNING"),
                        help="logging level (default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a job spec (YAML or JSON)")
    run.add_argument("spec", help="path to the job spec")
    _connections_argument(run)
    _connection_arguments(run)
    _run_dir_argument(run)
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec field, e.g. --set priority=70 (repeatable)")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--json", action="store_true", help="print result.json instead of a summary")
    run.add_argument("--direct", action="store_true",
                     help="run here even when the cluster has a job manager (whose queue "
                          "the job otherwise joins)")

    validate = sub.add_parser("validate", help="check a job spec without running it")
    validate.add_argument("spec")
    _connections_argument(validate)
    validate.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY=VALUE")

    resume = sub.add_parser("resume", help="finish an interrupted job from its checkpoints")
    resume.add_argument("job_id")
    _run_dir_argument(resume)
    _connections_argument(resume)
    _connection_arguments(resume)
    resume.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="change an execution setting for the rest")
    resume.add_argument("--quiet", action="store_true")
    resume.add_argument("--json", action="store_true")

    inspect = sub.add_parser("inspect", help="show state, steps and errors of a run")
    inspect.add_argument("job_id")
    _run_dir_argument(inspect)
    inspect.add_argument("--views", action="store_true",
                         help="also write dag.mmd and timeline.html into the run directory")

    plugins = sub.add_parser("plugins", help="list the registered plugins and their options")
    plugins.add_argument("kind", nargs="?", help="connectors, preprocessors, analyses, charts, "
                                                 "exporters or notifiers")
    plugins.add_argument("name", nargs="?", help="one plugin of that kind")

    schema = sub.add_parser("schema", help="print the JSON Schema of job specs")
    schema.add_argument("--spec-version", type=int, choices=(1, 2), default=1,
                        help="1: one source and one analysis; 2: a job graph (default 1)")
    _jobs_api_commands(sub)
    from raysight.service.manager_cli import add_manager_commands

    add_manager_commands(sub, _connection_arguments)
    _connection_arguments(add_cluster_command(sub))
    return parser


def _run_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", default=None,
                        help="where run folders go (default: RAYSIGHT_RUN_DIR, else ./runs; "
                             "~/raysight-runs for a driver in a Ray Jobs working directory)")


def _jobs_api_commands(sub: Any) -> None:
    address = {"default": None, "help": "the cluster's Jobs API, http://HOST:8265 (default: "
                                        "RAY_API_SERVER_ADDRESS, or RAY_ADDRESS if http)"}
    submit = sub.add_parser("submit", help="run a job spec on a Ray cluster (Jobs API)")
    submit.add_argument("spec", help="path to the job spec, inside the working directory")
    submit.add_argument("--address", **address)
    submit.add_argument("--working-dir", default=".",
                        help="the folder that travels with the job, where relative data paths "
                             "resolve (default: the current directory)")
    submit.add_argument("--run-dir", default=None,
                        help="where the run folder goes on the cluster: an absolute path on "
                             "storage the cluster shares, or ~/... on the driver's node "
                             "(default: RAYSIGHT_RUN_DIR, else ~/raysight-runs there)")
    submit.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a spec field (repeatable)")
    _connections_argument(submit)
    submit.add_argument("--wait", action="store_true",
                        help="follow the logs to the end and exit with the job's status")
    for name, text in (("status", "show a submitted job's status and metadata"),
                       ("logs", "print a submitted job's logs"),
                       ("cancel", "stop a submitted job")):
        command = sub.add_parser(name, help=text)
        command.add_argument("job_id", help="the raysight job id (its Jobs API submission id)")
        command.add_argument("--address", **address)
        if name == "logs":
            command.add_argument("--follow", action="store_true",
                                 help="stream the logs until the job ends")
        if name == "cancel":
            command.add_argument("--no-wait", action="store_true",
                                 help="return once the stop is requested")
    listing = sub.add_parser("list", help="list the jobs submitted to a cluster")
    listing.add_argument("--address", **address)
    listing.add_argument("--all", action="store_true",
                         help="every Jobs API job, not only raysight's")


def _connections_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", default=None, metavar="FILE",
                        help="the named connections file (default: RAYSIGHT_CONNECTIONS, else "
                             "~/.config/raysight/connections.yaml if it exists); the spec's "
                             "own `connections:` win for the same name")


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None,
                        help="Ray cluster address, HOST:PORT or ray://HOST:10001 (default: "
                             "RAY_ADDRESS, else an embedded local Ray of this command's own)")
    parser.add_argument("--connect-timeout", type=float, metavar="S",
                        default=float(os.environ.get("RAYSIGHT_CONNECT_TIMEOUT_S",
                                                     DEFAULT_CONNECT_TIMEOUT_S)),
                        help="seconds to wait for the cluster at --address (default "
                             f"{DEFAULT_CONNECT_TIMEOUT_S:g}, or RAYSIGHT_CONNECT_TIMEOUT_S)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command in ("run", "resume", "inspect"):
            _resolve_run_dir(args)
        if args.command in ("submit", "status", "logs", "cancel", "list"):
            return _jobs_api(args)
        if args.command == "manager":
            from raysight.service.manager_cli import manager_command

            return manager_command(args)
        if args.command == "cluster":
            return cluster_command(args)
        if args.command == "schema":
            from raysight.job.graph_spec import graph_json_schema
            from raysight.job.spec import json_schema

            schema = graph_json_schema() if args.spec_version == 2 else json_schema()
            print(json.dumps(schema, indent=2))
            return EXIT_OK
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "plugins":
            from raysight.debug.catalog import catalog

            print("\n".join(catalog(args.kind, args.name)))
            return EXIT_OK
        if args.command == "resume":
            from raysight.job.pipeline import AnalysisJob

            return _run(AnalysisJob.resume(args.job_id, args.run_dir, args.overrides,
                                           args.connections), args)
        from raysight.job.graph_spec import load_graph_spec
        from raysight.job.pipeline import AnalysisJob

        spec = load_graph_spec(args.spec, args.overrides, args.connections)
        if args.command == "validate":
            print(f"{args.spec}: valid ({_described(spec)})")
            return EXIT_OK
        from raysight.service.jobs_api import driver_job_id

        job_id = driver_job_id(spec.job_id, args.own_run_dir)
        return _run(AnalysisJob(spec, run_dir=args.run_dir, job_id=job_id), args)
    except InputError as err:
        print(f"raysight: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("raysight: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`raysight inspect JOB | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _resolve_run_dir(args: argparse.Namespace) -> None:
    """The run root, ``~`` expanded; never inside Ray's package folder for a new run."""
    from raysight.job.remote_run import is_url
    from raysight.service.jobs_api import (
        check_durable_run_dir,
        default_run_dir,
        in_ray_package_dir,
    )

    chosen = args.run_dir or default_run_dir()
    args.own_run_dir = args.run_dir is None  # raysight chose it
    if is_url(chosen):  # object storage: outlives any session (see raysight.job.remote_run)
        args.run_dir = chosen
        return
    if args.command == "inspect":
        args.run_dir = os.path.expanduser(chosen)
        return
    if args.run_dir is None and in_ray_package_dir(Path.cwd()):
        # a driver the Jobs API started: its logs are all one sees, so they say where it wrote
        print(f"raysight: run directory {os.path.expanduser(chosen)} (not Ray's package "
              "folder, which is deleted with the session)", file=sys.stderr)
    args.run_dir = str(check_durable_run_dir(chosen))


def _jobs_api(args: argparse.Namespace) -> int:
    from raysight.service import jobs_api

    client = jobs_api.jobs_client(args.address)
    if args.command == "submit":
        submission = jobs_api.submit(client, args.spec, working_dir=args.working_dir,
                                     run_dir=args.run_dir, overrides=tuple(args.overrides),
                                     connections=args.connections)
        print(f"submitted {submission.job_id}")
        print(f"run dir   {submission.run_dir}")
        if not args.wait:
            return EXIT_OK
        jobs_api.follow_logs(client, submission.job_id, sys.stdout)
        info = jobs_api.wait_for(client, submission.job_id)
        print(f"status    {info.status}")
        return jobs_api.exit_code(info)
    if args.command == "list":
        print("\n".join(jobs_api.table(client.list_jobs(), everything=args.all)))
        return EXIT_OK
    if args.command == "logs":
        if args.follow:
            jobs_api.follow_logs(client, args.job_id, sys.stdout)
        else:
            jobs_api.job_info(client, args.job_id)
            sys.stdout.write(client.get_job_logs(args.job_id))
        return EXIT_OK
    if args.command == "cancel":
        info = jobs_api.job_info(client, args.job_id)
        if str(info.status) in jobs_api.TERMINAL:
            print(f"{args.job_id} had already ended: {info.status}")
            return EXIT_OK
        client.stop_job(args.job_id)
        if args.no_wait:
            print(f"{args.job_id} stop requested")
            return EXIT_OK
        info = jobs_api.wait_for(client, args.job_id, timeout_s=60)
        print(f"{args.job_id} {info.status}")
        return EXIT_OK if str(info.status) in jobs_api.TERMINAL else EXIT_FAILED
    print("\n".join(jobs_api.describe(jobs_api.job_info(client, args.job_id))))
    return EXIT_OK


def _run(job: Any, args: argparse.Namespace) -> int:
    job.preflight()  # a missing file or column is reported before Ray starts (seconds)
    connect(args.address, timeout_s=args.connect_timeout, log_level=args.log_level)
    manager = None if getattr(args, "direct", False) else job.manager()
    if manager is not None:  # the cluster's job manager queues it
        from raysight.service.manager_cli import run_managed

        chosen = None if getattr(args, "own_run_dir", True) else str(job.run_root)
        return _finish(run_managed(job, manager, args.connections, chosen), args)
    observers = []
    progress = None
    if not args.quiet and not args.json and sys.stdout.isatty():
        progress = _Progress(job.job_id)
        observers.append(progress)
    try:
        if progress:
            progress.start()
        result = job.run(observers=observers)
    finally:
        if progress:
            progress.stop()
    return _finish(result, args)


def _finish(result: Any, args: argparse.Namespace) -> int:
    """Print what the job did and return the exit status its state gives."""
    if args.json:
        from raysight.job.remote_run import read_text

        print(read_text(Path(result.run_dir) / "result.json" if "://" not in result.run_dir
                        else f"{result.run_dir}/result.json"))
    else:
        _print_summary(result)
    if result.ok:
        return EXIT_OK
    if result.state == "CANCELED":
        return EXIT_INTERRUPTED
    if result.state == "COMPLETED_WITH_ERRORS":
        return EXIT_PARTIAL
    return EXIT_INVALID if result.input_error else EXIT_FAILED


def _inspect(args: argparse.Namespace) -> int:
    from raysight.debug.inspect import inspect_text, write_debug_views
    from raysight.job import remote_run
    from raysight.job.rundir import run_state

    if remote_run.is_url(args.run_dir):  # read its records into the local mirror
        url = f"{args.run_dir.rstrip('/')}/{args.job_id}"
        if not remote_run.exists(url):
            raise InputError(f"no run {args.job_id!r} under {args.run_dir} ({url} not found)",
                             path=url)
        args.run_dir = str(remote_run.local_mirror(args.run_dir))
        remote_run.download_records(url, Path(args.run_dir) / args.job_id)
    run_dir = Path(os.path.abspath(args.run_dir)) / args.job_id
    if not run_dir.is_dir():
        raise InputError(f"no run {args.job_id!r} under {args.run_dir} ({run_dir} not found)",
                         path=str(run_dir))
    result = run_state(run_dir)
    print(inspect_text(result))
    if args.views:
        plan = None
        spec_file = run_dir / "spec.json"
        if spec_file.exists():  # the plan is rebuilt from the spec the job ran with
            from raysight.job.graph_spec import parse_graph_spec
            from raysight.job.pipeline import AnalysisJob

            spec = parse_graph_spec(json.loads(spec_file.read_text(encoding="utf-8")),
                                    str(spec_file))
            plan = AnalysisJob(spec, run_dir=args.run_dir, job_id=args.job_id).workflow()
        for name in write_debug_views(run_dir, plan, result):
            print(f"wrote     {run_dir / name}")
    return EXIT_OK


_SINGULAR = {"sources": "source", "datasets": "dataset", "joins": "join", "unions": "union",
             "analyses": "analysis"}


def _described(spec: Any) -> str:
    """What a validated spec holds, in a few words: ``job graph: 2 sources, 1 join,
    1 analysis (aggregation)``."""
    counts = [(len(getattr(spec, section)), section) for section in _SINGULAR]
    nodes = ", ".join(f"{n} {section if n != 1 else _SINGULAR[section]}"
                      for n, section in counts if n)
    kinds = sorted({a.type for a in spec.analyses.values()})
    return f"job graph: {nodes} ({', '.join(kinds)})"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _print_summary(result: Any) -> None:
    print(f"job       {result.job_id}")
    print(f"state     {result.state}  ({result.execution_time_s:.2f} s)")
    for name, stats in result.data_stats.items():
        print(f"loaded    {name}: {_plural(stats.get('row_count', 0), 'row')} in "
              f"{_plural(stats.get('partitions', 0), 'partition')}")
    for name, analysis in result.analyses.items():
        print(f"analysis  {name} ({analysis['type']} of {analysis['from']}): "
              f"{_plural(analysis['rows'], 'row')}")
    print(f"run dir   {result.run_dir}")
    for path in result.outputs:
        print(f"output    {path}")
    for target in result.written:
        print(f"wrote     {target}")
    for warning in result.warnings:
        print(f"warning   {warning}")
    for error in result.errors:
        where = f"in {error['step']}: " if error.get("step") else ""
        print(f"error     [{error.get('category')}] {where}{error.get('message')}")


class _Progress:
    """A live table of the job's steps in the terminal (rich)."""

    def __init__(self, job_id: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.job_id = job_id
        self.steps: dict[str, dict[str, Any]] = {}
        self.live = Live(self._table(), console=Console(), refresh_per_second=8, transient=False)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.update(self._table())
        self.live.stop()

    def on_event(self, event: Any) -> None:
        # a row per step; job, node and data events only describe steps that have rows
        if event.step is None or not event.event_type.startswith(("step_", "task_")):
            return
        row = self.steps.setdefault(event.step, {"state": "pending", "tasks": "", "t0": None,
                                                 "elapsed": None, "retries": 0})
        if event.event_type == "step_started":
            row.update(state="running", tasks=str(event.data.get("tasks", "")),
                       t0=time.monotonic())
        elif event.event_type == "step_succeeded":
            row.update(state="done", elapsed=event.data.get("duration_s"))
        elif event.event_type == "step_failed":
            row["state"] = "failed"
        elif event.event_type == "step_skipped":
            row["state"] = "skipped"
        elif event.event_type == "task_retry":
            row["retries"] += 1
            row["state"] = "retrying"
        self.live.update(self._table())

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"raysight job {self.job_id}", expand=False)
        for column in ("step", "state", "tasks", "retries", "time"):
            table.add_column(column)
        colours = {"done": "green", "failed": "red", "running": "yellow", "retrying": "magenta",
                   "skipped": "dim"}
        for name, row in self.steps.items():
            elapsed = row["elapsed"]
            if elapsed is None and row["t0"] is not None:
                elapsed = time.monotonic() - row["t0"]
            state = row["state"]
            table.add_row(name, f"[{colours.get(state, 'white')}]{state}[/]", row["tasks"],
                          str(row["retries"] or ""), f"{elapsed:.2f} s" if elapsed else "")
        return table


if __name__ == "__main__":
    raise SystemExit(main())
