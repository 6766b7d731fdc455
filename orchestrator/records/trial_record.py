"""TrialRecord: a finished trial's final result plus its provenance. Pure: no Ray, no torch.

A record is what the results actor stores, the law fits and `memlaw export` writes. It round-trips
through JSON (the journal) and flattens to one pandas row (the export). Its `trial_id` is the
identity that makes delivery idempotent: the same trial sent twice counts once.

Status: "ok" for a trial that finished; failures carry their category so that faults are counted
apart and never reach the fit: "nan" (loss became NaN), "inf" (loss became infinite), "error" (an
exception), "timeout" (past the sweep's trial_timeout_s), "oom" (past trial_memory_mb, or out of
device memory).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from trainables import metric_names as K
from trainables.schema import canonical_hash, set_dotted

#: ok: the trial spent its budget or certified early, as its own final report says (FINISHED);
#: nan ... oom: it failed (FAILURES); pruned: a scheduler (ASHA) or stopper ended it early, a final
#: decision; stopped: Tune ended it for another reason (the driver stopped) before it finished, so
#: it is not final: `memlaw resume` trains it on and its next record replaces this one.
FAILURES = ("nan", "inf", "error", "timeout", "oom")
STATUSES = ("ok", *FAILURES, "pruned", "stopped")
#: What makes trials comparable under one law: same model, data kind and random share, adapter
#: placement and method. A group label joins their values with "|".
GROUP_FIELDS = (("model", "name"), ("data", "kind"), ("data", "random_share"), ("adapter", "placement"),
                ("method", "name"))
#: Everything else that changes ΔL for reasons other than r and ℓ: the budget, the data's size, where
#: the adapter sits and how it is scaled, the base model's file and dtype, the method's knobs. A sweep
#: usually holds these fixed, and then the label stays GROUP_FIELDS' alone; where trials of one label
#: differ here, law_group_labels splits them and names the difference, so one fit never pools trials
#: whose ΔL differs for budget reasons. Replicate seeds (seed, data.seed) and the grid's own axes (rank,
#: target_tokens) are not here: they are what a fit is over.
POOLING_FIELDS = (("model", "gguf_file"), ("model", "init_range"), ("model", "seed"), ("dtype",),
                  ("adapter", "layer"), ("adapter", "alpha"), ("adapter", "dropout"), ("adapter", "target_modules"),
                  ("adapter", "layers"), ("data", "num_sequences"), ("data", "prompt_tokens"), ("data", "text_file"),
                  ("budget", "steps"), ("budget", "lr"), ("budget", "weight_decay"), ("budget", "schedule"),
                  ("budget", "warmup_steps"), ("budget", "grad_clip"), ("budget", "batch_size"),
                  ("eval", "early_stop_certified"), ("method", "*"))
#: The final-result keys a record keeps (the per-sequence list stays in the trial folder).
RESULT_KEYS = tuple(k for k in K.EVAL_KEYS if k != K.GREEDY_EVALUATED)


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    sweep: str
    status: str
    config: dict[str, Any]  # the resolved TrialConfig as a nested dict
    metrics: dict[str, Any] = field(default_factory=dict)
    config_hash: str = ""
    seed: int | None = None
    node_id: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    checkpoint: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if not self.trial_id:
            raise ValueError("trial_id must not be empty")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def final(self) -> bool:
        """Whether this record is the trial's last word (a stopped trial's next record replaces it)."""
        return self.status != "stopped"

    @property
    def group(self) -> str:
        return group_label(self.config)

    # -- JSON ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @classmethod
    def from_json(cls, text: str | bytes) -> TrialRecord:
        return cls.from_dict(json.loads(text))

    # -- rows ----------------------------------------------------------------------------------------
    def law_row(self) -> dict[str, Any]:
        """What orchestrator.law.grouping.fit_groups reads: the metrics and the group label."""
        return {**self.metrics, "group": self.group}

    def to_row(self) -> dict[str, Any]:
        """One flat row for pandas: provenance, `config.*` columns, then the metrics."""
        row = {k: v for k, v in self.to_dict().items() if k not in ("config", "metrics")}
        row["group"] = self.group
        row.update({f"config.{k}": v for k, v in flatten(self.config).items()})
        row.update({k: self.metrics.get(k) for k in RESULT_KEYS})
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TrialRecord:
        config = unflatten({k[len("config."):]: _plain(v) for k, v in row.items() if k.startswith("config.")})
        metrics = {k: _plain(row[k]) for k in RESULT_KEYS if k in row and _plain(row[k]) is not None}
        base = {k: _plain(row[k]) for k in cls.__dataclass_fields__ if k in row and k not in ("config", "metrics")}
        return cls(**base, config=config, metrics=metrics)


def group_label(config: Mapping[str, Any]) -> str:
    parts = []
    for section, name in GROUP_FIELDS:
        value = (config.get(section) or {}).get(name)
        parts.append(f"{value:g}" if isinstance(value, float) else str(value))
    return "|".join(parts)


#: GROUP_FIELDS' values in words, for group_title; a value not listed is shown as it is.
_DATA_WORDS = {"random": "random tokens", "text": "text", "phonebook": "phone book"}
_METHOD_WORDS = {"sft": "SFT", "memft": "MemFT", "memft_sw": "MemFT sliding window",
                 "memft_curriculum": "MemFT curriculum"}


def group_title(label: str) -> str:
    """A law group's label as a person reads it, for figures: "tiny-s|random|0|paper|sft" becomes
    "tiny-s, random tokens, paper placement, SFT". The label itself stays the key everywhere else
    (JSON reports, `--group`, exports), so this only ever reads one; a law_group_labels suffix (the
    pooling fields that differ) is kept as it is, after the words. Why from the label and not the
    config: the fit, the report and the plot hold labels. Anything not made by group_label comes back
    unchanged."""
    parts = label.split("|", len(GROUP_FIELDS))
    if len(parts) < len(GROUP_FIELDS):
        return label
    model, kind, share, placement, method, *rest = parts
    data = _DATA_WORDS.get(kind, kind)
    try:
        if float(share) > 0:  # text with random tokens mixed in (the data's random_share)
            data += f" with {float(share):.0%} random tokens"
    except ValueError:
        pass
    words = [model, data, f"{placement} placement", _METHOD_WORDS.get(method, method), *rest]
    return ", ".join(words)


def pooling_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The POOLING_FIELDS of one config, by dotted name ("method.*": every method knob but its name)."""
    out: dict[str, Any] = {}
    for path in POOLING_FIELDS:
        node: Any = config
        if path[-1] == "*":
            section = config.get(path[0]) or {}
            out.update({f"{path[0]}.{k}": _hashable(v) for k, v in section.items() if k != "name"})
            continue
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        out[".".join(path)] = _hashable(node)
    return out


def law_group_labels(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each config's law group: group_label, plus "|field=value,..." for the POOLING_FIELDS that differ
    among the configs sharing that label (nothing added where they agree, the usual sweep)."""
    labels = [group_label(c) for c in configs]
    values = [pooling_values(c) for c in configs]
    differing: dict[str, list[str]] = {}
    for label in set(labels):
        members = [v for lab, v in zip(labels, values) if lab == label]
        keys = sorted({k for v in members for k in v})
        differing[label] = [k for k in keys if len({json.dumps(v.get(k), sort_keys=True) for v in members}) > 1]
    out = []
    for label, value in zip(labels, values):
        keys = differing[label]
        out.append(label + ("|" + ",".join(f"{k}={_show(value.get(k))}" for k in keys) if keys else ""))
    return out


def _hashable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, list) else str(value)


def config_hash(config: Mapping[str, Any]) -> str:
    return canonical_hash(config)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(list(value))  # one cell; columns stay scalar for Parquet
        else:
            out[name] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `flatten`: list cells back to lists, dotted names back to nested sections."""
    return set_dotted({}, {name: json.loads(v) if isinstance(v, str) and v.startswith("[") else v
                           for name, v in flat.items()})


def _plain(value: Any) -> Any:
    """pandas/numpy scalars to plain Python; NaN (a missing cell) to None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def completion_status(last_result: dict[str, Any] | None, pruning: bool) -> str:
    """What a trial that Tune completed really did. Tune hands on_trial_complete every trial it
    stops (a scheduler's stop, a trial whose function returned early, pending trials at shutdown),
    not only trials that ran to their end: only the trial's own final report (FINISHED) makes it ok.
    An unfinished one is pruned when the sweep's scheduler prunes (Tune marks its decision `done`),
    else stopped: not final, trained on by `memlaw resume`."""
    result = last_result or {}
    if result.get(K.FINISHED):
        return "ok"
    return "pruned" if pruning and result.get("done") else "stopped"


def record_from_result(trial_id: str, sweep: str, config: Mapping[str, Any], result: Mapping[str, Any] | None,
                       *, status: str = "ok", error: str | None = None, node_id: str | None = None,
                       checkpoint: str | None = None) -> TrialRecord:
    """A record from a trial's resolved config and its last reported result (Tune's or our own)."""
    result = dict(result or {})
    metrics = {k: result[k] for k in RESULT_KEYS if k in result}
    ended = result.get("timestamp")
    started = ended - result["time_total_s"] if ended is not None and "time_total_s" in result else None
    return TrialRecord(
        trial_id=trial_id, sweep=sweep, status=status, config=dict(config), metrics=metrics,
        config_hash=config_hash(config), seed=config.get("seed"),
        node_id=node_id or result.get("node_id") or result.get("node_ip") or result.get("hostname"),
        started_at=started, ended_at=ended,
        checkpoint=checkpoint, error=error,
    )
