"""What the native drivers share: the environment their worker CLI imports the app from."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from ..driver import Driver
from . import ENV_CONFIG, ENV_QUEUE, ENV_RESULT, ENV_URL


def settings() -> dict[str, str]:
    """The app settings a native module reads at import (in the worker) — empty outside a bench."""
    return {"url": os.environ.get(ENV_URL, ""), "result": os.environ.get(ENV_RESULT, ""),
            "queue": os.environ.get(ENV_QUEUE, "bench"), "config": os.environ.get(ENV_CONFIG, "defaults")}


def cli(name: str) -> str:
    """A console script of the running interpreter's environment (e.g. the venv's ``celery``)."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else (shutil.which(name) or name)


class NativeBase(Driver):
    mode = "native"
    library = ""

    def __init__(self, setup: Any) -> None:
        super().__init__(setup)
        self.queue = setup.iso.queue
        self.config = setup.config
        t = setup.target
        iso = setup.iso
        if t.transport == "redis":
            self.broker_url = iso.redis_url
        elif t.transport == "amqp":
            self.broker_url = iso.amqp_url
        else:
            self.broker_url = f"sqlite://{iso.workdir}/native-{t.library}-{iso.run_id}.db"
        self.result_url = iso.redis_url if t.transport in ("redis", "amqp") else ""

    def settings(self) -> dict[str, str]:
        return {"url": self.broker_url, "result": self.result_url, "queue": self.queue, "config": self.config}

    def worker_env(self, concurrency: int | None = None) -> dict[str, str]:
        env = super().worker_env(concurrency)
        s = self.settings()
        env.update({ENV_URL: s["url"], ENV_RESULT: s["result"], ENV_QUEUE: s["queue"], ENV_CONFIG: s["config"]})
        return env


def quiet_missing_queue_warnings() -> None:
    """Deleting a queue that is already gone makes RabbitMQ close the channel (404) and pika log a
    WARNING per queue on ``pika.channel``: expected during cleanup, so not shown to the user."""
    import logging

    logging.getLogger("pika.channel").setLevel(logging.ERROR)


def delete_amqp_queues(amqp_url: str, names: list[str]) -> None:
    """Delete this run's queues on RabbitMQ (isolation: nothing left behind). Best effort."""
    try:
        import pika

        quiet_missing_queue_warnings()
        conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
        try:
            for name in names:
                ch = conn.channel()
                try:
                    ch.queue_delete(name)
                except Exception:  # noqa: BLE001, S110 - absent queue closes the channel
                    pass
                finally:
                    if ch.is_open:
                        ch.close()
        finally:
            conn.close()
    except Exception:  # noqa: BLE001, S110
        pass
