"""Isolation on RabbitMQ: delete the queues and exchanges a run created (their names carry the
run id), so that nothing is left behind. Lists them with ``rabbitmqctl`` when it is installed
(a local broker); with a broker elsewhere the drivers' own deletions are all there is."""

from __future__ import annotations

import shutil
import subprocess


def _list(kind: str) -> list[str]:
    exe = shutil.which("rabbitmqctl")
    if not exe:
        return []
    try:
        res = subprocess.run([exe, "-q", f"list_{kind}", "name"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in res.stdout.splitlines()[1:] if line.strip()]


def amqp_leftovers(marker: str) -> dict[str, list[str]]:
    return {"queues": [q for q in _list("queues") if marker in q],
            "exchanges": [e for e in _list("exchanges") if marker in e]}


def delete_amqp(amqp_url: str, marker: str) -> dict[str, list[str]]:
    """Delete every queue and exchange whose name contains ``marker``; return what was deleted."""
    found = amqp_leftovers(marker)
    if not found["queues"] and not found["exchanges"]:
        return found
    import pika

    from .native.base import quiet_missing_queue_warnings

    quiet_missing_queue_warnings()
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        for kind, names in found.items():
            for name in names:
                ch = conn.channel()
                try:
                    (ch.queue_delete if kind == "queues" else ch.exchange_delete)(name)
                except Exception:  # noqa: BLE001, S110 - already gone
                    pass
                finally:
                    if ch.is_open:
                        ch.close()
    finally:
        conn.close()
    return found
