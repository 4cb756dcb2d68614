"""What the platform looks like now: nodes, their resources and load, utilisation, the queue
and the job manager's statistics (``raysight cluster``).

::

    from raysight.cluster import connect
    from raysight.service.cluster_status import describe_status, platform_status

    connect("10.0.0.5:6379")
    status = platform_status()                 # a JSON-ready dict
    status["cluster"]["cpu_utilisation"]       # 0.75: (total - available) / total
    print("\\n".join(describe_status(status)))

Everything comes through Ray's GCS and raylets, never the dashboard's HTTP API (which needs
the token header under token authentication and may not run at all): the node table
(``ray.nodes()``), resources per node, the autoscaler's view of each node (idle, running,
draining) and each raylet's statistics (tasks running, workers, object-store bytes in use).
Under Ray Client (``ray://``) the client process has no GCS connection of its own, so the
same collection runs as one zero-CPU task on the cluster (which then counts itself among the
running tasks). ``memory`` is Ray's logical memory resource: its utilisation is the share that
tasks and actors reserved, not the operating system's view.

``scheduler`` holds the job manager's statistics (:mod:`raysight.service.manager`) and
``queue`` its queue; both are None when no job manager runs, and when one runs but does not
answer, ``scheduler_error`` says why.
"""

from __future__ import annotations

import argparse
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from raysight.engine.resources import format_amount, format_bytes
from raysight.errors import InputError

log = logging.getLogger(__name__)

#: resources Ray defines itself; everything else on a node is a custom resource
STANDARD = ("CPU", "GPU", "memory", "object_store_memory")
_IMPLICIT_PREFIXES = ("node:", "accelerator_type:")
#: how long the job manager may take to report its statistics
STATS_TIMEOUT_S = 30.0


def platform_status(manager: Any | None = None) -> dict[str, Any]:
    """The platform's status as a JSON-ready dict: ``nodes``, ``cluster``, ``queue`` and
    ``scheduler`` (the job manager's statistics, None when no manager runs).

    ``manager`` is the job manager's actor handle; without one, the running manager is found
    by name (:func:`raysight.service.manager.find_manager`). Ray must be connected
    (:func:`raysight.cluster.connect`).
    """
    import ray

    if not ray.is_initialized():
        raise InputError("Ray is not connected: call raysight.cluster.connect(address) first "
                         "(or ray.init)")
    if _client_mode():
        collect = ray.remote(num_cpus=0)(_collect)
        nodes, cluster = ray.get(collect.remote())
    else:
        nodes, cluster = _collect()
    scheduler, error = _scheduler_stats(manager)
    status: dict[str, Any] = {"nodes": nodes, "cluster": cluster,
                              "queue": _queue(scheduler), "scheduler": scheduler}
    if error:
        status["scheduler_error"] = error
    return status


def _client_mode() -> bool:
    from ray.util.client import ray as client

    return bool(client.is_connected())


def _collect() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Nodes and cluster totals from this process's GCS connection (a driver or a task)."""
    import ray
    from ray._private import state

    available = state.available_resources_per_node()
    activity = _node_activity()
    entries = ray.nodes()
    # one raylet query per node, side by side: a silent node costs its timeout once
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(entries)))) as pool:
        loads = list(pool.map(lambda n: _raylet_load(n) if n.get("Alive") else {}, entries))
    nodes = [_node(n, available.get(n["NodeID"], {}), activity.get(n["NodeID"], {}), load)
             for n, load in zip(entries, loads, strict=True)]
    total, free = ray.cluster_resources(), ray.available_resources()
    used_store = sum(n["object_store_used_bytes"] or 0 for n in nodes if n["alive"])
    cluster = {
        "nodes_alive": sum(n["alive"] for n in nodes),
        "nodes_dead": sum(not n["alive"] for n in nodes),
        "resources_total": dict(total),
        "resources_available": dict(free),
        "cpu_utilisation": utilisation(total, free, "CPU"),
        "gpu_utilisation": utilisation(total, free, "GPU"),
        "memory_utilisation": utilisation(total, free, "memory"),
        "object_store_used_bytes": used_store,
        "object_store_total_bytes": total.get("object_store_memory", 0.0),
        "running_tasks": sum(n["running_tasks"] or 0 for n in nodes if n["alive"]),
    }
    return nodes, cluster


def utilisation(total: dict[str, float], available: dict[str, float], name: str
                ) -> float | None:
    """The share of resource ``name`` in use, 0..1: (total - available) / total; None when
    the cluster has none. Ray leaves a fully used resource out of ``available``."""
    amount = float(total.get(name, 0.0))
    if amount <= 0:
        return None
    return min(1.0, max(0.0, (amount - float(available.get(name, 0.0))) / amount))


def custom_resources(resources: dict[str, float]) -> dict[str, float]:
    """A node's own resources (``high_memory``, ``ssd``), without Ray's standard and implicit
    ones (``CPU``, ``node:10.0.0.5``, ``accelerator_type:A100``)."""
    return {k: v for k, v in resources.items()
            if k not in STANDARD and not k.startswith(_IMPLICIT_PREFIXES)}


def _node(entry: dict[str, Any], free: dict[str, float], activity: dict[str, Any],
          load: dict[str, Any]) -> dict[str, Any]:
    total = dict(entry.get("Resources") or {})
    alive = bool(entry.get("Alive"))
    free = {k: float(free.get(k, 0.0)) for k in total} if alive else {}
    return {
        "node_id": entry["NodeID"],
        "address": entry.get("NodeManagerAddress"),
        "hostname": entry.get("NodeManagerHostname"),
        "alive": alive,
        "state": "ALIVE" if alive else "DEAD",
        "activity": activity.get("status"),
        "idle_s": activity.get("idle_s"),
        "is_head": "node:__internal_head__" in total,
        "resources_total": total,
        "resources_available": free,
        "cpu": total.get("CPU", 0.0),
        "cpu_available": free.get("CPU", 0.0),
        "gpu": total.get("GPU", 0.0),
        "gpu_available": free.get("GPU", 0.0),
        "memory_bytes": total.get("memory", 0.0),
        "memory_available_bytes": free.get("memory", 0.0),
        "object_store_bytes": total.get("object_store_memory", 0.0),
        "object_store_used_bytes": load.get("object_store_used_bytes"),
        "custom_resources": custom_resources(total),
        "labels": dict(entry.get("Labels") or {}),
        "running_tasks": load.get("running_tasks"),
        "workers": load.get("workers"),
        "load_error": load.get("error"),
    }


def _raylet_load(entry: dict[str, Any]) -> dict[str, Any]:
    """Tasks running, worker processes and object-store bytes in use, from the node's raylet
    (a node whose raylet does not answer gets an ``error`` instead)."""
    from ray._private.internal_api import node_stats
    from ray.core.generated import common_pb2

    worker_type: Any = common_pb2.WorkerType  # type: ignore[attr-defined]

    try:
        stats = node_stats(entry["NodeManagerAddress"], entry["NodeManagerPort"],
                           include_memory_info=False)
    except Exception as exc:  # grpc.RpcError and friends: the node is listed but silent
        log.warning("node %s: its raylet at %s:%s did not report its load: %s",
                    entry["NodeID"], entry["NodeManagerAddress"], entry["NodeManagerPort"], exc)
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    return {
        "running_tasks": sum(w.num_running_tasks for w in stats.core_workers_stats
                             if w.worker_type == worker_type.Value("WORKER")),
        "workers": int(stats.num_workers),
        "object_store_used_bytes": int(stats.store_stats.object_store_bytes_used),
    }


def _node_activity() -> dict[str, dict[str, Any]]:
    """Each node's state as the autoscaler sees it (RUNNING, IDLE, DRAINING) and how long it
    has been idle, from the GCS; empty when this Ray does not report it."""
    import ray
    from ray.autoscaler.v2.sdk import get_cluster_resource_state
    from ray.core.generated import autoscaler_pb2

    worker: Any = ray._private.worker.global_worker
    node_status: Any = autoscaler_pb2.NodeStatus  # type: ignore[attr-defined]
    try:
        reply = get_cluster_resource_state(worker.gcs_client)
    except Exception as exc:  # an older GCS without the autoscaler v2 API
        log.warning("the GCS did not report node activity: %s", exc)
        return {}
    return {state.node_id.hex(): {
        "status": node_status.Name(state.status),
        "idle_s": state.idle_duration_ms / 1000.0 if state.idle_duration_ms else 0.0,
    } for state in reply.node_states}


def _scheduler_stats(manager: Any | None) -> tuple[dict[str, Any] | None, str | None]:
    """The job manager's statistics (None when no manager runs), and why a manager that
    exists gave none."""
    import ray

    if manager is None:
        try:
            from raysight.service.manager import find_manager
        except ImportError:
            return None, None
        manager = find_manager()
        if manager is None:
            return None, None
    try:
        return dict(ray.get(manager.stats.remote(), timeout=STATS_TIMEOUT_S)), None
    except (ray.exceptions.RayError, TimeoutError) as exc:  # dead, restarting or stuck
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("the job manager did not report its statistics: %s", reason)
        return None, f"the job manager did not answer: {reason}"


def _queue(scheduler: dict[str, Any] | None) -> dict[str, Any] | None:
    if scheduler is None:
        return None
    return {"queue_length": scheduler.get("queue_length", scheduler.get("pending_count")),
            "starting_jobs": scheduler.get("queued_count", 0),
            "running_jobs": scheduler.get("running_count"),
            "paused_jobs": scheduler.get("paused_count"),
            "max_concurrent": scheduler.get("max_concurrent")}


def describe_status(status: dict[str, Any]) -> list[str]:
    """The status for people, one fact a line: the cluster, the queue, the scheduler, then a
    line per node."""
    cluster, total, free = status["cluster"], status["cluster"]["resources_total"], \
        status["cluster"]["resources_available"]
    dead = f" ({cluster['nodes_dead']} dead)" if cluster["nodes_dead"] else ""
    lines = [f"nodes     {cluster['nodes_alive']} alive{dead}, "
             f"{_count(cluster['running_tasks'], 'task')} running"]
    for name, label in (("CPU", "CPU"), ("GPU", "GPU"), ("memory", "memory")):
        share = cluster[f"{name.lower()}_utilisation"]
        if share is None:
            lines.append(f"{label:<9} none")
            continue
        used = total[name] - free.get(name, 0.0)
        lines.append(f"{label:<9} {format_amount(name, used)} of {format_amount(name, total[name])}"
                     f" in use ({percent(share)})")
    store_total = cluster["object_store_total_bytes"]
    store_used = cluster["object_store_used_bytes"]
    share = store_used / store_total if store_total else 0.0
    lines.append(f"objects   {format_bytes(store_used)} of {format_bytes(store_total)} "
                 f"in the object store ({percent(share)})")
    if status.get("scheduler_error"):
        lines.append(f"scheduler {status['scheduler_error']}")
    else:
        lines.extend(_scheduler_lines(status.get("queue"), status.get("scheduler")))
    lines.extend(_node_line(node) for node in status["nodes"])
    return lines


def percent(share: float) -> str:
    """``0.375`` -> ``'38%'``; a share above zero never shows as 0%."""
    value = share * 100
    return "<1%" if 0 < value < 1 else f"{value:.0f}%"


def _scheduler_lines(queue: dict[str, Any] | None, stats: dict[str, Any] | None) -> list[str]:
    if queue is None or stats is None:
        return ["scheduler no job manager running"]
    cap = f" (at most {queue['max_concurrent']})" if queue.get("max_concurrent") else ""
    success = stats.get("success_rate")
    return [
        f"queue     {queue['queue_length']} waiting, {queue['starting_jobs']} starting, "
        f"{queue['running_jobs']} running{cap}, {queue['paused_jobs']} paused",
        f"scheduler {stats.get('completed_count', 0)} completed, "
        f"{stats.get('failed_count', 0)} failed, {stats.get('canceled_count', 0)} canceled"
        + (f" ({percent(success)} succeeded)" if success is not None else ""),
        f"times     {_seconds(stats.get('average_wait_time'))} waiting, "
        f"{_seconds(stats.get('average_execution_time'))} running on average, "
        f"{float(stats.get('average_retry_count') or 0.0):.2g} retries per job",
    ]


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3g} s"


def _node_line(node: dict[str, Any]) -> str:
    head = " head" if node["is_head"] else ""
    where = node["hostname"] or node["address"]
    if not node["alive"]:
        return f"node      {node['node_id'][:12]} {where}{head} DEAD"
    state = f"{node['state']} {node['activity']}" if node["activity"] else node["state"]
    parts = [f"CPU {_pair('CPU', node['cpu'] - node['cpu_available'], node['cpu'])}"]
    if node["gpu"]:
        parts.append(f"GPU {_pair('GPU', node['gpu'] - node['gpu_available'], node['gpu'])}")
    parts.append("memory " + _pair("memory", node["memory_bytes"]
                                   - node["memory_available_bytes"], node["memory_bytes"]))
    if node["object_store_used_bytes"] is not None:
        parts.append("objects " + _pair("object_store_memory", node["object_store_used_bytes"],
                                        node["object_store_bytes"]))
    if node["running_tasks"] is not None:
        parts.append(f"{_count(node['running_tasks'], 'task')} running on "
                     f"{_count(node['workers'], 'worker')}")
    elif node["load_error"]:
        parts.append(f"load unknown ({node['load_error']})")
    free = node["resources_available"]
    parts.extend(f"{name} {_pair(name, amount - free.get(name, 0.0), amount)}"
                 for name, amount in sorted(node["custom_resources"].items()))
    labels = {k: v for k, v in node["labels"].items() if not k.startswith("ray.io/")}
    if labels:
        parts.append("labels " + ",".join(f"{k}={v}" for k, v in sorted(labels.items())))
    return f"node      {node['node_id'][:12]} {where}{head} {state}: " + ", ".join(parts)


def _pair(name: str, used: float, total: float) -> str:
    return f"{format_amount(name, used)}/{format_amount(name, total)}"


def add_cluster_command(sub: Any) -> argparse.ArgumentParser:
    """Add ``raysight cluster [--json]`` to the command line's subparsers (the caller adds
    the connection arguments, ``--address`` among them)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "cluster", help="show nodes, resources, load, utilisation, the queue and the job "
                        "manager's statistics")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser


def cluster_command(args: argparse.Namespace) -> int:
    """Run ``raysight cluster``: connect, print the status, exit 0 (2 when the address is
    unreachable, which :func:`raysight.cluster.connect` reports)."""
    from raysight.cluster import connect

    connect(args.address, timeout_s=args.connect_timeout, log_level=args.log_level)
    status = platform_status()
    print(json.dumps(status, indent=2) if args.json else "\n".join(describe_status(status)))
    return 0
