"""What run.json records about the machine, the libraries and the brokers."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from typing import Any

from .targets import Isolation

PACKAGES = ("anytask", "celery", "kombu", "rq", "dramatiq", "huey", "taskiq", "taskiq-redis", "taskiq-aio-pika",
            "redis", "pika", "aio-pika", "psutil")


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5,
                             check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5, check=False)
        if out.returncode == 0:
            return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def redis_info(iso: Isolation) -> dict[str, Any]:
    try:
        import redis

        c = redis.Redis.from_url(iso.redis_url, socket_connect_timeout=1)
        info = c.info()
        cfg = c.config_get("save") | c.config_get("appendonly") | c.config_get("appendfsync")
        c.close()
        return {"version": info.get("redis_version"), "persistence": cfg,
                "url": iso.redis_url}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"}


def rabbitmq_info(iso: Isolation) -> dict[str, Any]:
    try:
        import pika

        host, _, port = iso.amqp.rpartition("@")[2].rpartition(":")
        user, _, pw = iso.amqp.rpartition("@")[0].partition(":")
        conn = pika.BlockingConnection(pika.ConnectionParameters(host, int(port), credentials=pika.PlainCredentials(user, pw),
                                                                 socket_timeout=2, blocked_connection_timeout=2))
        props = conn._impl.server_properties  # type: ignore[attr-defined]
        conn.close()
        ver = props.get("version")
        return {"version": ver.decode() if isinstance(ver, bytes) else ver,
                "persistence": "messages published persistent by each library's own default; queues durable as each declares",
                "url": f"amqp://{host}:{port}/"}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"}


def capture(backends: list[str], iso: Isolation) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": {p: _version(p) for p in PACKAGES},
        "git_commit": git_commit(),
        "clock": "time.monotonic (CLOCK_MONOTONIC, system-wide on Linux)",
        "backends": backends,
    }
    if any("redis" in b or "amqp" in b for b in backends):
        env["redis"] = redis_info(iso)
    if any("amqp" in b for b in backends):
        env["rabbitmq"] = rabbitmq_info(iso)
    try:
        import psutil

        env["memory_total_mb"] = psutil.virtual_memory().total / 2**20
    except ImportError:
        pass
    return env
