"""The rich progress display during a run and the summary table at the end."""

from __future__ import annotations

from typing import Any

from .results import Record


class RichDisplay:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress_bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=self.console, transient=False)
        self.overall: Any = None
        self.current: Any = None

    def begin(self, total: int) -> None:
        self.progress_bar.start()
        self.overall = self.progress_bar.add_task("measurements", total=total)

    def measurement(self, label: str, total: int) -> None:
        if self.current is not None:
            self.progress_bar.remove_task(self.current)
        self.current = self.progress_bar.add_task(f"  {label} (tasks)", total=total)

    def progress(self, done: int, total: int) -> None:
        if self.current is not None:
            self.progress_bar.update(self.current, completed=done, total=total)

    def done(self, record: Record) -> None:
        self.progress_bar.advance(self.overall)
        if record.error and "not-applicable" not in record.flags:
            self.console.print(f"[yellow]{record.scenario} {record.backend} {record.config} {record.mode}: "
                               f"{record.error.splitlines()[0][:200]}[/]")

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/]")

    def end(self) -> None:
        if self.current is not None:
            self.progress_bar.remove_task(self.current)
            self.current = None
        self.progress_bar.stop()


def _f(x: Any, fmt: str = "{:.0f}") -> str:
    if x is None:
        return "-"
    if isinstance(x, dict):
        med, lo, hi = x.get("median"), x.get("min"), x.get("max")
        if med is None:
            return "-"
        s = fmt.format(med)
        return s if lo == hi else f"{s} ({fmt.format(lo)}-{fmt.format(hi)})"
    return fmt.format(x)


def _ratio(r: dict[str, Any], key: str) -> str:
    v = r.get(key)
    return f"{v:.2f}" if v else "-"


def throughput_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="throughput (tasks/s, medians; min-max over repeats)", title_justify="left")
    for col in ("scenario", "backend", "cfg", "mode", "slots", "ok/lost/dup", "enqueue/s", "drain/s", "ms/task",
                "ideal s", "eff", "cpu s/1k", "rss MB", "fac/nat", "of floor", "flags"):
        t.add_column(col, no_wrap=col not in ("flags",))
    for r in rows:
        if r.get("latency_ms"):
            continue
        tput = r.get("throughput") or {}
        name = r["scenario"] + (f" x{r['workers']}" if r["scenario"] == "scale" else "")
        t.add_row(name, r["backend"], r["config"][:3], r["mode"][:3], str(r["slots"]),
                  f"{r['completed']}/{r['lost']}/{r['duplicated']}", _f(r.get("enqueue_rate")), _f(tput),
                  f"{1000 / tput['median']:.2f}" if tput.get("median") else "-",
                  _f(r.get("ideal_s"), "{:.2f}"), _f(r.get("efficiency"), "{:.2f}"),
                  _f(r.get("cpu_s_per_1k"), "{:.2f}"), _f(r.get("rss_mb")),
                  _ratio(r, "facade_vs_native_throughput"), _ratio(r, "of_floor_throughput"), " ".join(r["flags"]))
    return t


def latency_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="latency (ms, medians over repeats): enqueue -> result seen, and its two parts",
              title_justify="left")
    for col in ("scenario", "backend", "cfg", "mode", "ok/lost/dup", "p50", "p95", "p99", "max",
                "enq->start p50", "end->seen p50", "fac/nat p50", "floor/p50", "flags"):
        t.add_column(col, no_wrap=col != "flags")
    for r in rows:
        lat = r.get("latency_ms")
        if not lat:
            continue
        med = {k: (lat.get(k) or {}).get("median") for k in ("p50", "p95", "p99", "max")}
        t.add_row(r["scenario"], r["backend"], r["config"][:3], r["mode"][:3],
                  f"{r['completed']}/{r['lost']}/{r['duplicated']}",
                  *[_f(med[k], "{:.2f}") for k in ("p50", "p95", "p99", "max")],
                  _f((lat.get("enqueue_to_start") or {}).get("p50"), "{:.2f}"),
                  _f((lat.get("end_to_result") or {}).get("p50"), "{:.2f}"),
                  _ratio(r, "facade_vs_native_latency_p50"), _ratio(r, "of_floor_latency"), " ".join(r["flags"]))
    return t


def print_summary(run_doc: dict[str, Any], errors: list[Record]) -> None:
    from rich.console import Console

    c = Console(width=max(Console().width, 190))
    rows = run_doc.get("summary", [])
    c.print(throughput_table(rows))
    c.print(latency_table(rows))
    for name, ceil in (run_doc.get("ceilings") or {}).items():
        c.print(f"ceiling {name}: " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in ceil.items()))
    instr = run_doc.get("instrumentation") or {}
    if instr:
        ab = instr.get("ab") or {}
        line = f"instrumentation: {instr.get('stamp_pair_us', 0):.2f} µs per start+end stamp pair (loop)"
        if ab:
            line += (f"; A/B on {ab.get('backend')}: stamps add {ab.get('overhead', 0):.1%} to its noop drain "
                     f"({ab.get('per_task_us', 0):.1f} µs per task), limit {ab.get('limit', 0):.0%}")
        c.print(line)
    for e in errors:
        if "not-applicable" in e.flags:
            continue
        c.print(f"[red]not measured[/] {e.scenario} {e.backend} {e.config} {e.mode}: {(e.error or '').splitlines()[0][:160]}")
