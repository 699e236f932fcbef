"""``anytask brokers up|down|status``: Redis and RabbitMQ for the benchmarks.

``up`` starts what does not answer yet: through the Docker SDK when an engine answers (the images,
names and ports of docker-compose.yml, which :func:`compose_text` generates), else through the
local ``redis-server`` / ``rabbitmq-server`` binaries (data under a state directory), else it says
what to install. What ``up`` started is written to a state file; ``down`` stops exactly that.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from .targets import answers

STATE_DIR = os.environ.get("ANYTASK_BROKERS_DIR", os.path.join(tempfile.gettempdir(), f"anytask-brokers-{os.getuid()}"))


@dataclass(frozen=True)
class Service:
    name: str  # "redis" | "rabbitmq"
    image: str
    container_port: int
    command: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()

    def url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0" if self.name == "redis" else f"amqp://guest:guest@127.0.0.1:{port}//"


REDIS = Service("redis", "redis:7-alpine", 6379, ("redis-server", "--save", "", "--appendonly", "no"))
RABBITMQ = Service("rabbitmq", "rabbitmq:3.13-alpine", 5672)
SERVICES = (REDIS, RABBITMQ)


def container_spec(svc: Service, port: int) -> dict[str, Any]:
    """The keyword arguments of ``docker.containers.run`` for a service published on ``port``."""
    spec: dict[str, Any] = {"image": svc.image, "name": f"anytask-{svc.name}-{port}", "detach": True,
                            "ports": {f"{svc.container_port}/tcp": ("127.0.0.1", port)},
                            "labels": {"anytask": "bench"}, "auto_remove": False}
    if svc.command:
        spec["command"] = list(svc.command)
    if svc.environment:
        spec["environment"] = dict(svc.environment)
    return spec


def compose_text() -> str:
    """docker-compose.yml, generated from the same specs as the Docker SDK path (kept in sync by a test)."""
    lines = ["# Generated from anytask/bench/brokers.py (compose_text); 'anytask brokers up' starts the same",
             "# containers through the Docker SDK. Usage: docker compose up -d", "services:"]
    for svc in SERVICES:
        spec = container_spec(svc, svc.container_port)
        lines += [f"  {svc.name}:", f"    image: {svc.image}", f"    container_name: {spec['name']}",
                  "    ports:", f"      - \"127.0.0.1:{svc.container_port}:{svc.container_port}\""]
        if svc.command:
            lines.append("    command: [" + ", ".join(json.dumps(c) for c in svc.command) + "]")
        lines += ["    labels:", "      anytask: bench"]
    return "\n".join(lines) + "\n"


# -- state -----------------------------------------------------------------------------------------------


def _state_path() -> str:
    return os.path.join(STATE_DIR, "started.json")


def load_state() -> dict[str, Any]:
    try:
        with open(_state_path()) as fh:
            return json.load(fh)  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def save_state(state: dict[str, Any]) -> None:
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(_state_path(), "w") as fh:
        json.dump(state, fh, indent=1)


# -- Docker ---------------------------------------------------------------------------------------------


def docker_client() -> Any | None:
    """A Docker client when an engine answers, else None."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        return client
    except Exception:  # noqa: BLE001 - no SDK, no socket, no engine
        return None


def docker_up(client: Any, svc: Service, port: int) -> dict[str, Any]:
    spec = container_spec(svc, port)
    try:
        old = client.containers.get(spec["name"])
        old.remove(force=True)
    except Exception:  # noqa: BLE001, S110 - docker.errors.NotFound
        pass
    c = client.containers.run(**spec)
    return {"via": "docker", "container": spec["name"], "id": getattr(c, "id", None), "port": port}


def docker_down(client: Any, entry: dict[str, Any]) -> None:
    try:
        client.containers.get(entry["container"]).remove(force=True)
    except Exception:  # noqa: BLE001, S110
        pass


# -- local binaries ---------------------------------------------------------------------------------------


def local_redis_cmd(port: int, workdir: str, persistent: bool = False) -> list[str]:
    """``persistent``: every write is in the append-only file before Redis answers (survives kill -9)."""
    persist = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persist,
            "--dir", workdir, "--daemonize", "no", "--logfile", os.path.join(workdir, "redis.log")]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_rabbitmq_env(port: int, workdir: str, dist_port: int | None = None) -> dict[str, str]:
    node = f"anytask{port}@localhost"
    return {"RABBITMQ_NODE_PORT": str(port), "RABBITMQ_NODENAME": node,
            "RABBITMQ_DIST_PORT": str(dist_port or _free_port()),  # Erlang distribution: any free port
            "RABBITMQ_MNESIA_BASE": os.path.join(workdir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(workdir, "log"), "RABBITMQ_PID_FILE": os.path.join(workdir, "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(workdir, "enabled_plugins"),
            "RABBITMQ_CONFIG_FILES": os.path.join(workdir, "conf.d"),
            "RABBITMQ_FEATURE_FLAGS_FILE": os.path.join(workdir, "feature_flags"),
            "RABBITMQ_CONFIG_FILE": os.path.join(workdir, "rabbitmq.conf"),
            "ERL_CRASH_DUMP": os.path.join(workdir, "erl_crash.dump")}


def _give_to_rabbitmq_user(workdir: str) -> None:
    """Debian's rabbitmq-server wrapper re-runs itself as user 'rabbitmq' when started by root."""
    if os.getuid() != 0:
        return
    try:
        import pwd

        pw = pwd.getpwnam("rabbitmq")
    except (ImportError, KeyError):
        return
    for root, dirs, files in os.walk(workdir):
        for name in [root, *(os.path.join(root, x) for x in dirs + files)]:
            os.chown(name, pw.pw_uid, pw.pw_gid)


def local_up(svc: Service, port: int) -> dict[str, Any]:
    if svc.name == "rabbitmq" and os.getuid() == 0:
        # the node runs as user 'rabbitmq', which must reach its directory: not under a private tmp dir
        workdir = tempfile.mkdtemp(prefix=f"anytask-rabbitmq-{port}-")
        os.chmod(workdir, 0o755)
    else:
        workdir = os.path.join(STATE_DIR, f"{svc.name}-{port}")
    entry = local_spawn(svc, port, workdir)
    entry["remove_workdir"] = not workdir.startswith(STATE_DIR)
    return entry


def local_spawn(svc: Service, port: int, workdir: str, *, persistent: bool = False,
                dist_port: int | None = None) -> dict[str, Any]:
    """Start a local broker on ``port`` with its data in ``workdir`` (kept: a second call on the same
    ``workdir`` restarts it on its data). ``persistent`` Redis: AOF with fsync on every write;
    RabbitMQ always keeps durable queues and persistent messages in its ``mnesia`` directory.
    Returns the entry :func:`local_down` takes; the caller waits for the port."""
    os.makedirs(workdir, exist_ok=True)
    if svc.name == "redis":
        cmd, env = local_redis_cmd(port, workdir, persistent), dict(os.environ)
    else:
        env = {**os.environ, **local_rabbitmq_env(port, workdir, dist_port)}
        for d in ("RABBITMQ_CONFIG_FILES", "RABBITMQ_MNESIA_BASE", "RABBITMQ_LOG_BASE"):
            os.makedirs(env[d], exist_ok=True)
        open(env["RABBITMQ_ENABLED_PLUGINS_FILE"], "a").close()
        with open(env["RABBITMQ_CONFIG_FILE"], "w") as fh:  # the system's rabbitmq.conf may pin 5672
            fh.write(f"listeners.tcp.local = 127.0.0.1:{port}\n")
        _give_to_rabbitmq_user(workdir)
        cmd = ["rabbitmq-server"]
    with open(os.path.join(workdir, "stdout.log"), "ab") as log:
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    return {"via": "local", "pid": p.pid, "pgid": p.pid, "port": port, "workdir": workdir,
            "node": env.get("RABBITMQ_NODENAME")}


def _node_pids(node: str | None) -> list[int]:
    """Processes of a local RabbitMQ node we started: they carry its RABBITMQ_NODENAME."""
    if not node:
        return []
    try:
        import psutil
    except ImportError:
        return []
    out = []
    for p in psutil.process_iter(["name"]):
        try:
            if p.info.get("name") in ("beam.smp", "beam", "erl", "sh", "su") and \
                    p.environ().get("RABBITMQ_NODENAME") == node:
                out.append(p.pid)
        except psutil.Error:
            pass
    return out


def local_down(entry: dict[str, Any], timeout: float = 30.0,
               signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGKILL)) -> None:
    """SIGTERM what we started (its process group and, for RabbitMQ, the node's processes, which
    Debian's wrapper starts through su in a session of their own), wait until the port is closed,
    then SIGKILL whatever is left. ``signals=(SIGKILL,)`` kills at once (a crash)."""
    pgid, port = entry.get("pgid"), entry.get("port")
    pids = _node_pids(entry.get("node"))
    for sig in signals:
        if pgid:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            try:
                os.waitpid(entry["pid"], os.WNOHANG)
            except ChildProcessError:
                pass
            left = [p for p in pids if _exists(p)]
            group = pgid and _exists_group(pgid)
            if not left and not group and not (port and answers("127.0.0.1", port, 0.2)):
                return
            time.sleep(0.1)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _exists_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _binary(svc: Service) -> str | None:
    return shutil.which("redis-server" if svc.name == "redis" else "rabbitmq-server")


INSTALL_HINT = ("neither a Docker engine nor the {binary} binary is available. Install one of: Docker "
                "(then 'anytask brokers up' or 'docker compose up -d'), or the broker itself, e.g. "
                "'apt-get install redis-server rabbitmq-server' / 'brew install redis rabbitmq'")


def _alive(pid: int | None) -> bool:
    if not pid:
        return True  # a container: no local process to watch
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


def wait_answer(port: int, timeout: float, pid: int | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers("127.0.0.1", port, 0.5):
            return True
        if not _alive(pid):
            return False
        time.sleep(0.2)
    return False


def up(ports: dict[str, int], prefer: str = "auto", client: Any = None, timeout: float = 120.0,
       echo: Any = print) -> int:
    state = load_state()
    code = 0
    client = client if client is not None else (docker_client() if prefer in ("auto", "docker") else None)
    if prefer == "docker" and client is None:
        echo("no Docker engine answers (is the daemon running? DOCKER_HOST?)")
        return 1
    for svc in SERVICES:
        port = ports.get(svc.name)
        if port is None:
            continue
        if answers("127.0.0.1", port, 0.5):
            echo(f"{svc.name}: already answers on 127.0.0.1:{port} ({svc.url(port)})")
            continue
        if client is not None:
            entry = docker_up(client, svc, port)
        elif _binary(svc):
            entry = local_up(svc, port)
        else:
            echo(f"{svc.name}: " + INSTALL_HINT.format(binary="redis-server" if svc.name == "redis" else "rabbitmq-server"))
            code = 1
            continue
        state[f"{svc.name}:{port}"] = entry
        save_state(state)
        ok = wait_answer(port, timeout if svc.name == "rabbitmq" else min(timeout, 30.0), entry.get("pid"))
        where = f" (log: {entry['workdir']})" if entry.get("workdir") else ""
        echo(f"{svc.name}: started via {entry['via']} on {svc.url(port)}"
             + ("" if ok else f" but it does not answer{where}"))
        code = code or (0 if ok else 1)
    return code


def down(ports: dict[str, int] | None = None, client: Any = None, echo: Any = print) -> int:
    state = load_state()
    if not state:
        echo("nothing was started by 'anytask brokers up'")
        return 0
    for key, entry in list(state.items()):
        name, _, port = key.partition(":")
        if ports is not None and ports.get(name) != int(port):
            continue
        if entry.get("via") == "docker":
            c = client if client is not None else docker_client()
            if c is not None:
                docker_down(c, entry)
        else:
            local_down(entry)
            if entry.get("remove_workdir") and not os.environ.get("ANYTASK_BROKERS_KEEP"):
                shutil.rmtree(entry["workdir"], ignore_errors=True)
        echo(f"{name}: stopped ({entry.get('via')}, port {port})")
        del state[key]
    save_state(state)
    return 0


def status(ports: dict[str, int], echo: Any = print) -> int:
    state = load_state()
    missing = 0
    for svc in SERVICES:
        port = ports[svc.name]
        ok = answers("127.0.0.1", port, 0.5)
        who = state.get(f"{svc.name}:{port}", {}).get("via")
        echo(f"{svc.name:9} {svc.url(port):42} {'answers' if ok else 'does not answer'}"
             + (f" (started by 'anytask brokers up' via {who})" if who else ""))
        missing += not ok
    if missing:
        echo("start them with: anytask brokers up")
    return 0 if not missing else 1


def main(action: str, redis_port: int = 6379, amqp_port: int = 5672, prefer: str = "auto") -> int:
    ports = {"redis": redis_port, "rabbitmq": amqp_port}
    if action == "up":
        return up(ports, prefer)
    if action == "down":
        return down(ports)
    return status(ports)
