"""The probe result type, the feature list and the survey's claimed cells."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

LIBRARIES = ("celery", "rq", "dramatiq", "huey", "taskiq")
VERDICTS = ("yes", "partial", "plugin", "no", "unknown")

# feature key -> (survey table, survey row label)
FEATURES: dict[str, tuple[str, str]] = {
    "basic_queuing": ("core", "Basic Queuing"),
    "retries": ("core", "Job Retries"),
    "scheduling_delay": ("core", "Scheduling"),
    "scheduling_periodic": ("core", "Scheduling"),
    "priority": ("core", "Priority Queues"),
    "chaining": ("core", "Job Chaining"),
    "groups": ("core", "Workflow Groups"),
    "rate_limiting": ("advanced", "Rate Limiting"),
    "dead_letter_queues": ("advanced", "Dead Letter Queues"),
    "result_storage": ("advanced", "Result Storage"),
    "task_routing": ("advanced", "Task Routing"),
    "custom_serializers": ("advanced", "Custom Serializers"),
    "monitoring_apis": ("advanced", "Monitoring APIs"),
    "setup_simplicity": ("devex", "Setup Simplicity"),
    "configuration": ("devex", "Configuration"),
    "debugging_tools": ("devex", "Debugging Tools"),
    "documentation": ("devex", "Documentation"),
    "type_safety": ("devex", "Type Safety"),
    "async_support": ("devex", "Async Support"),
}

# The survey's S2 feature matrices, transcribed cell by cell (✅ -> yes, ❌ -> no; Configuration keeps its words).
_Y, _N = "yes", "no"
SURVEY_CELLS: dict[str, dict[str, str]] = {
    "Basic Queuing": {"celery": _Y, "rq": _Y, "dramatiq": _Y, "huey": _Y, "taskiq": _Y},
    "Job Retries": {"celery": _Y, "rq": _Y, "dramatiq": _Y, "huey": _Y, "taskiq": _Y},
    "Scheduling": {"celery": _Y, "rq": _Y, "dramatiq": _Y, "huey": _Y, "taskiq": _Y},
    "Priority Queues": {"celery": _Y, "rq": _N, "dramatiq": _Y, "huey": _N, "taskiq": _Y},
    "Job Chaining": {"celery": _Y, "rq": _N, "dramatiq": _N, "huey": _N, "taskiq": _Y},
    "Workflow Groups": {"celery": _Y, "rq": _N, "dramatiq": _N, "huey": _N, "taskiq": _N},
    "Rate Limiting": {"celery": _Y, "rq": _N, "dramatiq": _Y, "huey": _N, "taskiq": _Y},
    "Dead Letter Queues": {"celery": _Y, "rq": _N, "dramatiq": _Y, "huey": _N, "taskiq": _Y},
    "Result Storage": {"celery": _Y, "rq": _Y, "dramatiq": _N, "huey": _Y, "taskiq": _Y},
    "Task Routing": {"celery": _Y, "rq": _N, "dramatiq": _Y, "huey": _N, "taskiq": _Y},
    "Custom Serializers": {"celery": _Y, "rq": _Y, "dramatiq": _Y, "huey": _N, "taskiq": _Y},
    "Monitoring APIs": {"celery": _Y, "rq": _Y, "dramatiq": _Y, "huey": _Y, "taskiq": _Y},
    "Setup Simplicity": {"celery": _N, "rq": _Y, "dramatiq": _Y, "huey": _Y, "taskiq": _Y},
    "Configuration": {"celery": "Complex", "rq": "Simple", "dramatiq": "Medium", "huey": "Simple", "taskiq": "Medium"},
    "Debugging Tools": {"celery": _Y, "rq": _Y, "dramatiq": _Y, "huey": _Y, "taskiq": _Y},
    "Documentation": {"celery": _Y, "rq": _Y, "dramatiq": _Y, "huey": _Y, "taskiq": _Y},
    "Type Safety": {"celery": _N, "rq": _N, "dramatiq": _Y, "huey": _N, "taskiq": _Y},
    "Async Support": {"celery": _N, "rq": _N, "dramatiq": _N, "huey": _N, "taskiq": _Y},
}
# Configuration words map onto verdicts by the rule in docs/probes.md (simple=yes, medium=partial, complex=no).
CONFIG_WORDS = {"Simple": "yes", "Medium": "partial", "Complex": "no"}

# Side claims of S1/S3/S4 that the probes check: id -> (library, text, section, feature probe that decides it).
CLAIMS: dict[str, tuple[str, str, str, str]] = {
    "rq_no_builtin_scheduling": ("rq", "RQ has no built-in scheduling", "S3 use case 3", "claim_scheduling"),
    "dramatiq_no_result_storage": ("dramatiq", "Dramatiq has no (built-in) result storage", "S2 matrix, S3 use case 2",
                                   "claim_result_storage"),
    "dramatiq_no_progress_tracking": ("dramatiq", "Dramatiq has no (built-in) progress tracking", "S3 use case 4",
                                      "claim_progress_tracking"),
    "rq_redis_only": ("rq", "RQ is limited to the Redis backend only", "S2 RQ weaknesses", "claim_redis_only"),
    "huey_backends": ("huey", "Huey backends: SQLite, Redis, or file", "S2 Huey architecture", "claim_backends"),
}


@dataclass(frozen=True)
class ProbeResult:
    library: str
    feature: str
    verdict: str  # one of VERDICTS
    version: str
    api: str  # the exact API the experiment used
    observed: str  # what the experiment saw (or why it could not decide)
    missing: str | None = None  # for partial: what is missing
    plugin: str | None = None  # for plugin: the separate package needed
    seconds: float | None = None  # how long the probe took
    measure: dict[str, Any] | None = field(default=None)  # numeric proxies (developer-experience probes)
    holds: bool | None = None  # for side-claim probes: does the survey's claim hold

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"bad verdict {self.verdict!r}")
        if self.verdict == "partial" and not self.missing:
            raise ValueError(f"{self.library}/{self.feature}: partial needs 'missing'")
        if self.verdict == "plugin" and not self.plugin:
            raise ValueError(f"{self.library}/{self.feature}: plugin needs the package name")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def unknown(library: str, feature: str, version: str, reason: str, api: str = "-",
            seconds: float | None = None) -> ProbeResult:
    return ProbeResult(library, feature, "unknown", version, api, reason, seconds=seconds)


REQUIRED_KEYS = ("library", "feature", "verdict", "version", "api", "observed", "missing", "plugin")


def validate_features_json(doc: dict[str, Any], libraries: tuple[str, ...] = LIBRARIES) -> list[str]:
    """Return a list of schema problems (empty when the document is complete and well formed)."""
    problems: list[str] = []
    for key in ("schema", "generated_at", "libraries", "survey", "claims"):
        if key not in doc:
            problems.append(f"missing top-level key {key!r}")
    libs = doc.get("libraries", {})
    for lib in libraries:
        entry = libs.get(lib)
        if not entry:
            problems.append(f"library {lib} missing")
            continue
        feats = entry.get("features", {})
        for feat in FEATURES:
            r = feats.get(feat)
            if r is None:
                problems.append(f"{lib}/{feat} missing")
                continue
            for k in REQUIRED_KEYS:
                if k not in r:
                    problems.append(f"{lib}/{feat} lacks {k}")
            if r.get("verdict") not in VERDICTS:
                problems.append(f"{lib}/{feat} bad verdict {r.get('verdict')!r}")
            if r.get("verdict") == "partial" and not r.get("missing"):
                problems.append(f"{lib}/{feat} partial without missing")
            if r.get("verdict") == "plugin" and not r.get("plugin"):
                problems.append(f"{lib}/{feat} plugin without package")
            if not r.get("api") or not r.get("observed"):
                problems.append(f"{lib}/{feat} empty api/observed")
    return problems
