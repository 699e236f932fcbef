"""The report's charts (matplotlib, Agg, deterministic PNGs: no dates, no software tag, fixed fonts).

Every chart is drawn from run.json / features.json through ``data.RunData`` and the verdicts; a chart
whose data is absent from the run is still written, saying so, so the report always has the same set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from . import claims as C
from .data import Group, RunData, Stat, path_getter
from .verdicts import Verdict

CHARTS = ("throughput", "latency", "latency_breakdown", "resources", "scale", "facade_overhead", "features")
TITLES = {
    "throughput": "Drain throughput per backend",
    "latency": "Latency percentiles per backend",
    "latency_breakdown": "Where the latency goes",
    "resources": "Resources per backend",
    "scale": "Scale-out",
    "facade_overhead": "Facade overhead",
    "features": "Feature matrix: survey vs probes",
}
SERIES = (("defaults", "native"), ("defaults", "facade"), ("tuned", "native"), ("tuned", "facade"))
COLOURS = {("defaults", "native"): "#9ecae1", ("defaults", "facade"): "#fdae6b",
           ("tuned", "native"): "#3182bd", ("tuned", "facade"): "#e6550d"}
VERDICT_COLOURS = {C.CONFIRMED: "#a1d99b", C.PARTLY: "#fee391", C.REFUTED: "#fc9272", C.NOT_COMPARABLE: "#d9d9d9"}
DPI = 100


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({
        "font.family": "DejaVu Sans", "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
        "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 9, "figure.dpi": DPI,
        "savefig.dpi": DPI, "axes.grid": True, "grid.alpha": 0.3, "axes.axisbelow": True,
        "svg.hashsalt": "anytask", "path.simplify": True,
    })
    return plt


def _save(fig: Any, path: str) -> str:
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight",
                pad_inches=0.15)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _empty(plt: Any, path: str, title: str, why: str) -> str:
    fig, ax = plt.subplots(figsize=(8, 2))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True)
    return _save(fig, path)


def _n_text(groups: list[Group], whiskers: bool = True) -> str:
    ns = sorted({g.n for g in groups})
    reps = sorted({g.repeats for g in groups})
    return (f"n = {', '.join(str(n) for n in ns)} tasks per measurement, "
            f"{'/'.join(str(r) for r in reps)} repeat{'s' if reps != [1] else ''}"
            + ("; bars: median, whiskers: min–max" if whiskers else "; bars: median over repeats"))


TP = path_getter("throughput")
P = {k: path_getter(f"latency_ms.{k}") for k in ("p50", "p95", "p99")}
PARTS = (("enqueue_to_start", "enqueue → start"), ("run", "run (start → end)"), ("end_to_result", "end → result seen"))


def _grouped_bars(ax: Any, backends: list[str], series: list[tuple[str, dict[str, Stat | None], str]],
                  log: bool = False, fmt_value: Callable[[float], str] = C.fmt) -> None:
    import numpy as np

    k = max(len(series), 1)
    width = 0.8 / k
    x = np.arange(len(backends))
    for i, (label, stats, colour) in enumerate(series):
        xs, meds, lo, hi = [], [], [], []
        for j, b in enumerate(backends):
            st = stats.get(b)
            if st is None:
                continue
            xs.append(x[j] - 0.4 + width * (i + 0.5))
            meds.append(st.median)
            lo.append(st.median - st.min)
            hi.append(st.max - st.median)
        if not xs:
            continue
        ax.bar(xs, meds, width * 0.92, label=label, color=colour, yerr=[lo, hi], capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        for xv, m in zip(xs, meds):
            ax.annotate(fmt_value(m), (xv, m), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=6.5, rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels(backends, rotation=20, ha="right")
    if log:
        ax.set_yscale("log")
    ax.margins(y=0.25)


def _layout(fig: Any, title_lines: int = 1) -> None:
    """tight_layout that leaves the figure's suptitle its own band (it overlapped the first axes' title)."""
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.1 + 0.2 * title_lines) / fig.get_figheight()))


def _stats_by(data: RunData, scenario: str, config: str, mode: str, getter: Callable[[dict[str, Any]], Any],
              backends: list[str]) -> dict[str, Stat | None]:
    out: dict[str, Stat | None] = {}
    for b in backends:
        g = data.group(scenario, b, config, mode)
        out[b] = g.stat(getter) if g else None
    return out


def chart_throughput(plt: Any, data: RunData, path: str) -> str:
    prefer = ("throughput-noop", "throughput-io", "throughput-cpu")
    scenarios = [s for s in prefer if s in data.scenarios] + [s for s in data.scenarios if s.startswith("payload")]
    scenarios += [s for s in data.scenarios if s.startswith("throughput") and s not in scenarios]
    if not scenarios:
        return _empty(plt, path, TITLES["throughput"], "no throughput scenario in run.json")
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(11, 4.2 * len(scenarios)), squeeze=False)
    ceilings = data.run.get("ceilings") or {}
    for ax, sc in zip(axes[:, 0], scenarios):
        groups = data.where(scenario=sc)
        backends = sorted({g.backend for g in groups})
        series = [(f"{c} / {m}", _stats_by(data, sc, c, m, TP, backends), COLOURS[(c, m)]) for c, m in SERIES]
        _grouped_bars(ax, backends, series, log=True)
        for name, style in (("redis-py", "--"), ("pika", ":")):
            t = (ceilings.get(name) or {}).get("throughput")
            if isinstance(t, (int, float)):
                ax.axhline(t, color="#444444", linestyle=style, linewidth=1,
                           label=f"raw ceiling: {name} drain {C.fmt(t)} tasks/s")
        ax.set_ylabel("tasks/s (log scale)")
        ax.set_title(f"{sc}: drain throughput (completed / first start → last end)\n{_n_text(groups)}", fontsize=10)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    fig.suptitle(f"{TITLES['throughput']} — {data.run.get('slots', '?')} slots per backend on "
                 f"{data.cpu_count} cores", fontsize=12)
    _layout(fig, title_lines=1)
    return _save(fig, path)


def _latency_rows(data: RunData, scenario: str) -> list[tuple[str, Group]]:
    rows = []
    for g in data.select(lambda g: g.scenario == scenario and g.config == "tuned"):
        rows.append((f"{g.backend}\n{g.mode}", g))
    if not rows:  # tuned not run
        rows = [(f"{g.backend}\n{g.mode}", g) for g in data.select(lambda g: g.scenario == scenario)]
    return rows


def chart_latency(plt: Any, data: RunData, path: str) -> str:
    scenarios = [s for s in ("latency-sporadic", "latency-steady") if s in data.scenarios]
    if not scenarios:
        return _empty(plt, path, TITLES["latency"], "no latency scenario in run.json")
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(11, 4.2 * len(scenarios)), squeeze=False)
    colours = {"p50": "#3182bd", "p95": "#9ecae1", "p99": "#e6550d"}
    for ax, sc in zip(axes[:, 0], scenarios):
        rows = _latency_rows(data, sc)
        labels = [r[0] for r in rows]
        series = [(k, {lab: g.stat(P[k]) for lab, g in rows}, colours[k]) for k in ("p50", "p95", "p99")]
        _grouped_bars(ax, labels, series, log=True)
        ax.set_xticklabels([lab.replace("\n", " ") for lab in labels], rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("enqueue → result seen, ms (log)")
        cfg = rows[0][1].config if rows else "?"
        ax.set_title(f"{sc} ({cfg} config): latency percentiles\n{_n_text([g for _, g in rows])}", fontsize=10)
        ax.legend(loc="upper left")
    fig.suptitle(TITLES["latency"], fontsize=12)
    _layout(fig, title_lines=1)
    return _save(fig, path)


def chart_latency_breakdown(plt: Any, data: RunData, path: str) -> str:
    import numpy as np

    scenarios = [s for s in ("latency-sporadic", "latency-steady") if s in data.scenarios]
    if not scenarios:
        return _empty(plt, path, TITLES["latency_breakdown"], "no latency scenario in run.json")
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(11, 4.0 * len(scenarios)), squeeze=False)
    colours = ("#3182bd", "#bdbdbd", "#e6550d")
    for ax, sc in zip(axes[:, 0], scenarios):
        rows = _latency_rows(data, sc)
        x = np.arange(len(rows))
        bottom = np.zeros(len(rows))
        for (part, label), colour in zip(PARTS, colours):
            vals = []
            for _, g in rows:
                st = g.stat(path_getter(f"latency_ms.{part}.p50"))
                vals.append(st.median if st else 0.0)
            ax.bar(x, vals, 0.6, bottom=bottom, label=f"{label} (p50)", color=colour)
            bottom += np.array(vals)
        for xv, total in zip(x, bottom):
            ax.annotate(C.fmt(float(total)), (xv, total), xytext=(0, 2), textcoords="offset points", ha="center",
                        fontsize=7)
        ax.set_xticks(x)
        ax.set_xticklabels([r[0].replace("\n", " ") for r in rows], rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("ms (medians of the parts)")
        ax.set_title(f"{sc}: enqueue → start, run, end → result seen (p50 of each part, stacked)\n"
                     f"{_n_text([g for _, g in rows], whiskers=False)}", fontsize=10)
        ax.legend(loc="upper left")
        ax.margins(y=0.15)
    fig.suptitle(TITLES["latency_breakdown"], fontsize=12)
    _layout(fig, title_lines=1)
    return _save(fig, path)


def _per_mb(rec: dict[str, Any]) -> float | None:
    if rec.get("per_mb") is not None:
        return float(rec["per_mb"])
    t, rss = rec.get("throughput"), rec.get("rss_mb")
    return t / rss if t and rss else None


def chart_resources(plt: Any, data: RunData, path: str) -> str:
    sc = "throughput-noop" if "throughput-noop" in data.scenarios else next(
        (s for s in data.scenarios if s.startswith("throughput")), None)
    if sc is None:
        return _empty(plt, path, TITLES["resources"], "no throughput scenario (resources are sampled during drains)")
    groups = data.where(scenario=sc)
    backends = sorted({g.backend for g in groups})
    panels = [("cpu_s_per_1k", path_getter("cpu_s_per_1k"), "worker-tree CPU-seconds per 1,000 tasks", False),
              ("rss_mb", path_getter("rss_mb"), "peak RSS of the worker process tree, MiB", False),
              ("per_mb", _per_mb, "tasks/s per MiB of worker RSS", False)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.8 * len(panels)), squeeze=False)
    for ax, (_name, getter, ylabel, log) in zip(axes[:, 0], panels):
        series = [(f"{c} / {m}", _stats_by(data, sc, c, m, getter, backends), COLOURS[(c, m)]) for c, m in SERIES]
        have = [b for b in backends if any(st.get(b) for _, st, _ in series)]  # memory:// has no worker tree
        series = [(label, {b: st.get(b) for b in have}, colour) for label, st, colour in series]
        _grouped_bars(ax, have, series, log=log)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4)
    axes[0, 0].set_title(f"{sc}: sampled every 0.25 s during the drain (psutil); memory:// runs in the producer "
                         f"(no worker tree)\n{_n_text(groups)}", fontsize=10)
    fig.suptitle(TITLES["resources"], fontsize=12)
    _layout(fig, title_lines=1)
    return _save(fig, path)


def chart_scale(plt: Any, data: RunData, path: str) -> str:
    groups = data.where(scenario="scale")
    if not groups:
        return _empty(plt, path, TITLES["scale"], "scenario 'scale' was not run (it is in the full profile)")
    configs = [c for c in ("defaults", "tuned") if any(g.config == c for g in groups)]
    fig, axes = plt.subplots(1, len(configs), figsize=(12, 5.2), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10")
    backends = sorted({g.backend for g in groups})
    ws_all = sorted({g.workers for g in groups})
    for ax, cfg in zip(axes[0], configs):
        for b in backends:
            for m in ("native", "facade"):
                pts = [(g.workers, st) for g in data.scale_groups(b, cfg, m) if (st := g.stat(TP)) is not None]
                if not pts:
                    continue
                ax.errorbar([w for w, _ in pts], [s.median for _, s in pts],
                            yerr=[[s.median - s.min for _, s in pts], [s.max - s.median for _, s in pts]],
                            marker="o" if m == "native" else "s", capsize=3, linestyle="-" if m == "native" else "--",
                            color=cmap(backends.index(b) % 10), label=f"{b} {m}")
        ax.set_xticks(ws_all)
        ax.set_xlabel(f"worker processes (1 slot each; {data.cpu_count} cores)")
        ax.set_yscale("log")
        ax.set_title(f"{cfg} configuration", fontsize=10)
    axes[0, 0].set_ylabel("drain throughput, tasks/s (log)")
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    axes[0, -1].legend([handles[k] for k in sorted(handles)], sorted(handles), loc="center left",
                       bbox_to_anchor=(1.01, 0.5), fontsize=7)
    fig.suptitle(f"{TITLES['scale']}: throughput vs worker processes (noop; solid native, dashed facade)\n"
                 f"{_n_text(groups, whiskers=False).replace('bars: median over repeats', 'points: median, whiskers: min–max')}",
                 fontsize=11)
    _layout(fig, title_lines=2)
    return _save(fig, path)


def chart_facade_overhead(plt: Any, data: RunData, path: str) -> str:
    import numpy as np

    panels = []
    for sc, getter, label in (("throughput-noop", TP, "throughput: facade / native (higher = facade faster)"),
                              ("latency-sporadic", P["p50"], "p50 latency: facade / native (lower = facade faster)")):
        if sc not in data.scenarios:
            continue
        rows: dict[str, dict[str, float]] = {}
        for g in data.where(scenario=sc, mode="facade"):
            nat = data.group(sc, g.backend, g.config, "native", g.workers)
            f, n = g.stat(getter), nat.stat(getter) if nat else None
            if f and n and n.median:
                rows.setdefault(g.backend, {})[g.config] = f.median / n.median
        if rows:
            panels.append((sc, label, rows))
    if not panels:
        return _empty(plt, path, TITLES["facade_overhead"], "no backend was measured in both modes")
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.8 * len(panels)), squeeze=False)
    for ax, (sc, label, rows) in zip(axes[:, 0], panels):
        backends = sorted(rows)
        x = np.arange(len(backends))
        for i, (cfg, colour) in enumerate((("defaults", "#9ecae1"), ("tuned", "#3182bd"))):
            vals = [rows[b].get(cfg, np.nan) for b in backends]
            xs = x - 0.2 + 0.4 * i
            ax.bar(xs, vals, 0.38, label=cfg, color=colour)
            for xv, v in zip(xs, vals):
                if not np.isnan(v):
                    ax.annotate(f"{v:.2f}", (xv, v), xytext=(0, 2), textcoords="offset points", ha="center",
                                fontsize=7)
        ax.axhline(1.0, color="#444444", linewidth=1, linestyle="--", label="parity (1.0)")
        ax.set_xticks(x)
        ax.set_xticklabels(backends, rotation=20, ha="right")
        ax.set_ylabel("ratio facade / native")
        groups = data.where(scenario=sc)
        ax.set_title(f"{sc} — {label}\n{_n_text(groups, whiskers=False)}; bars: ratio of the medians", fontsize=10)
        ax.legend(loc="upper right")
        ax.margins(y=0.2)
    fig.suptitle(TITLES["facade_overhead"], fontsize=12)
    _layout(fig, title_lines=1)
    return _save(fig, path)


def chart_features(plt: Any, verdicts: list[Verdict], libraries: list[str], path: str) -> str:
    cells = [v for v in verdicts if v.claim.kind == "feature"]
    if not cells:
        return _empty(plt, path, TITLES["features"], "no feature claims")
    rows: list[str] = []
    for v in cells:
        if v.claim.row not in rows:
            rows.append(v.claim.row)
    lookup = {(v.claim.row, v.claim.library): v for v in cells}
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.6))
    for i, row in enumerate(rows):
        for j, lib in enumerate(libraries):
            cell = lookup.get((row, lib))
            colour = VERDICT_COLOURS[cell.verdict] if cell else "#ffffff"
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="white", linewidth=1.5))
            if cell:
                # measured is "feature: verdict[, feature: verdict]" -> "verdict[/verdict]"
                probe = "/".join(x.split(": ", 1)[-1] for x in cell.measured.split(", ")) if cell.measured else "?"
                ax.text(j + 0.5, i + 0.5, f"{cell.claim.claimed} → {probe}", ha="center", va="center",
                        fontsize=8.5)
    ax.set_xlim(0, len(libraries))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([j + 0.5 for j in range(len(libraries))])
    ax.set_xticklabels(libraries)
    ax.xaxis.tick_top()
    ax.set_yticks([i + 0.5 for i in range(len(rows))])
    ax.set_yticklabels(rows)
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=k) for k, c in VERDICT_COLOURS.items()], loc="upper center",
              bbox_to_anchor=(0.5, -0.01), ncol=4, fontsize=8)
    ax.set_title(f"{TITLES['features']}: each cell 'survey → probe verdict(s)', coloured by the report's verdict "
                 f"({len(cells)} cells)", fontsize=10, pad=24)
    fig.tight_layout()
    return _save(fig, path)


def write_all(data: RunData, verdicts: list[Verdict], libraries: list[str], out_dir: str) -> dict[str, str]:
    """Write charts/<name>.png for every chart; returns name -> path."""
    plt = _plt()
    os.makedirs(out_dir, exist_ok=True)
    paths: dict[str, str] = {}
    for name in CHARTS:
        path = os.path.join(out_dir, f"{name}.png")
        if name == "features":
            paths[name] = chart_features(plt, verdicts, libraries, path)
        else:
            fn = globals()[f"chart_{name}"]
            paths[name] = fn(plt, data, path)
    return paths
