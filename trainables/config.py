"""TrialConfig: everything one memorization trial needs, frozen and validated at construction.

A trial freezes a causal LM, attaches a LoRA adapter of rank r, and trains it to reproduce ℓ target
tokens verbatim. The config is read from YAML (`TrialConfig.from_yaml`), with `--set a.b=v`
overrides; every error names its dotted field and the allowed range. Checks that need the model's
shape (rank versus hidden size, layer index) run in `trainables.model.check_against_model`, still
before any weights are loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from trainables.methods import MethodConfig  # the method table and its config section (one file per method change)
from trainables.schema import Config, ConfigError, Problem, canonical_hash, spec
from trainables.yaml_input import apply_overrides, load_yaml_mapping

TINY_PRESETS = ("tiny-xs", "tiny-s", "tiny-m", "tiny-l")
#: Largest seed: every seed reaches numpy (default_rng, and the legacy np.random.seed that accepts
#: only [0, 2**32 - 1]) or torch.manual_seed ([0, 2**64 - 1]); the narrower range holds for both.
SEED_MAX = 2**32 - 1
PACKAGE_PREFIX = "package:"
#: loss_chunk_tokens' default: a chunk of 1024 target tokens holds 0.6 GB of fp32 logits on Qwen3's
#: vocabulary (151,936), where the whole logits at ℓ = 10,000 take 6 GB; forwards over at most 1024
#: positions run unchunked, as before.
LOSS_CHUNK_TOKENS = 1024


@dataclass(frozen=True)
class ModelConfig(Config):
    """The frozen base model."""

    name: str = spec("tiny-s", "tiny preset (tiny-xs|tiny-s|tiny-m|tiny-l), local folder, hub id, "
                     "or package:NAME for a model shipped inside an installed Python package")
    gguf_file: str | None = spec(None, "GGUF file inside `name` (transformers' gguf_file loading)")
    init_range: float = spec(0.2, "tiny presets: initializer_range; 0.2 lets a frozen head reach p > 0.5",
                             lo=0.0, hi=10.0, lo_open=True)
    seed: int = spec(0, "tiny presets: seed of the random init (fixed across a sweep: one base model)", lo=0,
                     hi=SEED_MAX)

    @property
    def is_tiny(self) -> bool:
        return self.name in TINY_PRESETS

    def cross_checks(self) -> list[Problem]:
        if not self.name.strip():
            return [Problem("name", "must name a tiny preset, a folder, a hub id or package:NAME")]
        if self.name.startswith(PACKAGE_PREFIX) and not self.name[len(PACKAGE_PREFIX):].isidentifier():
            return [Problem("name", f"package:NAME needs an importable package name, got {self.name!r}")]
        if self.is_tiny and self.gguf_file:
            return [Problem("gguf_file", "tiny presets are built from a config; gguf_file must be null")]
        return []


@dataclass(frozen=True)
class AdapterConfig(Config):
    """The LoRA adapter: where it sits and how large it is."""

    placement: Literal["paper", "peft"] = spec(
        "paper", "paper: one adapter parallel to one layer's MLP block; peft: LoRA on named modules")
    rank: int = spec(8, "LoRA rank r", lo=1, hi=65536)
    layer: int | None = spec(None, "paper: layer index (0-based); null = about 2/3 depth", lo=0)
    alpha: float | None = spec(None, "LoRA alpha; null = rank, i.e. scaling 1 (the paper: no alpha/r scaling)",
                               lo=0.0, lo_open=True)
    dropout: float | None = spec(None, "adapter dropout; null = 0.1 for paper placement, 0.0 for peft",
                                 lo=0.0, hi=1.0, hi_open=True)
    target_modules: tuple[str, ...] = spec(
        factory=lambda: ("q_proj", "k_proj", "v_proj", "o_proj"), doc="peft: module names to adapt")
    layers: tuple[int, ...] | None = spec(None, "peft: layer indices to adapt; null = all layers")

    @property
    def effective_dropout(self) -> float:
        if self.dropout is not None:
            return self.dropout
        return 0.1 if self.placement == "paper" else 0.0

    @property
    def effective_alpha(self) -> float:
        return float(self.rank) if self.alpha is None else self.alpha

    def cross_checks(self) -> list[Problem]:
        problems = []
        if self.placement == "peft" and not self.target_modules:
            problems.append(Problem("target_modules", "peft placement needs at least one module name"))
        if self.placement == "peft" and self.layer is not None:
            problems.append(Problem("layer", "only for placement: paper (peft uses `layers`)"))
        if self.placement == "paper" and self.layers is not None:
            problems.append(Problem("layers", "only for placement: peft (paper uses `layer`)"))
        if self.layers is not None and any(i < 0 for i in self.layers):
            problems.append(Problem("layers", f"indices must be >= 0, got {list(self.layers)}"))
        return problems


@dataclass(frozen=True)
class DataConfig(Config):
    """What to memorize. Each target follows a prompt that identifies it; only targets are scored."""

    kind: Literal["random", "text", "phonebook"] = spec(
        "random", "random: uniform vocabulary tokens; text: a text with a random share; phonebook: name -> number")
    target_tokens: int = spec(64, "random/text: target tokens per sequence", lo=1, hi=10_000_000)
    num_sequences: int = spec(1, "number of targets (phonebook: entries), each with its own key", lo=1,
                              hi=10_000_000)
    prompt_tokens: int = spec(8, "random/text: length of each target's random key prompt", lo=1, hi=4096)
    text_file: str | None = spec(None, "text: a UTF-8 text file; null = the shipped public-domain sample")
    random_share: float = spec(0.0, "text: share of target tokens replaced by random tokens", lo=0.0, hi=1.0)
    seed: int = spec(0, "seed of the data (fixed across a sweep's replicates)", lo=0, hi=SEED_MAX)

    def cross_checks(self) -> list[Problem]:
        problems = []
        if self.kind != "text" and self.text_file is not None:
            problems.append(Problem("text_file", "only for kind: text"))
        if self.kind != "text" and self.random_share != 0.0:
            problems.append(Problem("random_share", "only for kind: text (random is all random tokens)"))
        if self.text_file is not None and not os.path.isfile(os.path.expanduser(self.text_file)):
            problems.append(Problem("text_file", f"no such file: {self.text_file}"))
        return problems


BUDGET_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's budget (docs/science.md §4): AdamW, lr 1e-2, no decay, linear to 0, no warm-up, clip 1.0.
    "paper": {"steps": 2000, "lr": 1e-2, "weight_decay": 0.0, "schedule": "linear", "warmup_steps": 0,
              "grad_clip": 1.0, "batch_size": 1},
    # Tiny random-init models on CPU: the paper's lr and clip, full-batch, fewer steps.
    "cpu": {"steps": 300, "lr": 1e-2, "weight_decay": 0.0, "schedule": "linear", "warmup_steps": 0,
            "grad_clip": 1.0, "batch_size": None},
}


@dataclass(frozen=True)
class BudgetConfig(Config):
    """The optimizer budget (AdamW). `preset: paper|cpu` in YAML fills these; explicit keys win."""

    steps: int = spec(300, "optimizer steps", lo=1, hi=100_000_000)
    lr: float = spec(1e-2, "peak learning rate", lo=0.0, hi=10.0, lo_open=True)
    weight_decay: float = spec(0.0, "AdamW weight decay", lo=0.0, hi=1.0)
    schedule: Literal["linear", "constant", "cosine"] = spec("linear", "decay after warm-up (to 0)")
    warmup_steps: int = spec(0, "linear warm-up steps", lo=0)
    grad_clip: float | None = spec(1.0, "max gradient norm; null = no clipping", lo=0.0, lo_open=True)
    batch_size: int | None = spec(None, "sequences per step; null = all sequences", lo=1)

    def cross_checks(self) -> list[Problem]:
        if self.warmup_steps >= self.steps:
            return [Problem("warmup_steps", f"must be < steps ({self.steps}), got {self.warmup_steps}")]
        return []


@dataclass(frozen=True)
class EvalConfig(Config):
    """When to measure. The certificate runs at every evaluation; greedy decoding is costlier."""

    every: int = spec(10, "steps between evaluations (the last step is always evaluated)", lo=1)
    greedy_every: int = spec(0, "greedy decoding every k evaluations; 0 = only at the end", lo=0)
    checkpoint_every: int = spec(0, "checkpoint every k evaluations; 0 = only the final adapter", lo=0)
    early_stop_certified: bool = spec(False, "end the trial once every target token is certified")


@dataclass(frozen=True)
class TrialConfig(Config):
    """One memorization trial."""

    model: ModelConfig = spec(factory=ModelConfig, doc="the frozen base model")
    adapter: AdapterConfig = spec(factory=AdapterConfig, doc="the LoRA adapter")
    data: DataConfig = spec(factory=DataConfig, doc="what to memorize")
    budget: BudgetConfig = spec(factory=BudgetConfig, doc="optimizer budget")
    method: MethodConfig = spec(factory=MethodConfig, doc="training loss")
    eval: EvalConfig = spec(factory=EvalConfig, doc="evaluation cadence")
    seed: int = spec(42, "seed of the adapter init, dropout and batch order", lo=0, hi=SEED_MAX)
    dtype: Literal["float32", "bfloat16", "float16"] = spec("float32", "base model dtype (adapter trains in fp32)")
    device: str = spec("auto", "auto | cpu | cuda | cuda:N")
    threads: int = spec(1, "torch CPU threads for this trial (one per trial beats two on 2 cores)", lo=1, hi=1024)
    prefix_cache: bool = spec(True, "paper placement: compute the frozen layers below the adapter once per trial "
                                    "and train from their cached output (exact; off: every forward runs the whole "
                                    "model). Used where exact: one process, a family in "
                                    "trainables/prefix_cache.py EXACT_FAMILIES, no dropout below the adapter")
    loss_chunk_tokens: int = spec(LOSS_CHUNK_TOKENS, "in a forward whose logits would hold more than this many "
                                  "positions (batch × padded length), run the LM head and the cross-entropy over at "
                                  "most this many target tokens at a time, so the [positions, vocabulary] fp32 "
                                  "logits never exist at once (exact; trainables/chunked_loss.py). 0: off. Used "
                                  "with one whole model in one process and a family in CHUNKED_FAMILIES",
                                  lo=0, hi=2**24)
    inject_fault: Literal["none", "nan", "inf", "error", "hang", "alloc"] = spec(
        "none", "fault drills and tests: make the trial fail on purpose at step `inject_at_step` (nan/inf: the "
                "loss diverges; error: raises; hang: blocks; alloc: allocates memory until stopped)")
    inject_at_step: int = spec(1, "the step at which inject_fault strikes", lo=1)

    def cross_checks(self) -> list[Problem]:
        problems = []
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            problems.append(Problem("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}"))
        if self.dtype == "float16" and self.device == "cpu":
            problems.append(Problem("dtype", "float16 needs a GPU; on cpu use float32 or bfloat16"))
        too_big = memory_problem(self)
        if too_big:
            problems.append(too_big)
        return problems

    # -- loading ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, prefix: str = "") -> TrialConfig:
        try:
            expanded = _expand_presets(data, prefix)
        except ConfigError as err:  # an unknown preset: report it with the rest of the file's problems
            rest = {**data, "budget": {k: v for k, v in data["budget"].items() if k != "preset"}}
            try:
                super().from_dict(rest, prefix)
            except ConfigError as more:
                raise ConfigError(err.problems + more.problems) from None
            raise
        return super().from_dict(expanded, prefix)

    @classmethod
    def from_yaml(cls, path: str, overrides: list[str] | tuple[str, ...] = ()) -> TrialConfig:
        """Read a trial file, apply `--set` overrides, validate everything at once."""
        data = load_yaml_mapping(path)
        return cls.from_dict(apply_overrides(data, list(overrides)))

    def with_updates(self, **sections: Any) -> TrialConfig:
        return replace(self, **sections)

    def config_hash(self) -> str:
        """A stable short hash of the resolved config (provenance for records)."""
        return canonical_hash(self.to_dict())


# -- will the trial's data fit? --------------------------------------------------------------------
#: Bytes per token of the packed data: ids and attention mask, int64 each (trainables.data.pack).
#: The Python tuples they are built from cost about as much again: the estimate is a lower bound.
TOKEN_BYTES = 16
#: Bytes per logit (float32) of one forward pass.
LOGIT_BYTES = 4
#: The share of this machine's physical memory one trial's data may take.
MEMORY_SHARE = 0.25
#: Tokens per phonebook entry (prompt "Name: ...\nPhone: " and a 10-digit number, byte tokenizer).
PHONEBOOK_TOKENS = 48


def physical_memory_bytes() -> int | None:
    """This machine's physical memory (os.sysconf), or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def memory_problem(cfg: TrialConfig, vocab: int | None = None) -> Problem | None:
    """A problem naming data.num_sequences when the trial's data cannot fit, else None.

    The estimate is deliberately simple and a lower bound: the packed token arrays,
    num_sequences × (prompt_tokens + target_tokens) × TOKEN_BYTES (phonebook: PHONEBOOK_TOKENS a
    sequence), plus, when `vocab` is given (the model's shape is known: check_against_model) the
    float32 logits of one training batch, batch × length × vocab × LOGIT_BYTES (batch_size, or every
    sequence), or of one loss chunk when the batch has more positions than loss_chunk_tokens (the
    chunked loss, trainables/chunked_loss.py; a lower bound still where a family is not chunked). The cap is MEMORY_SHARE of this machine's physical memory: a sweep's trials run
    side by side, and the model, optimizer and activations need the rest. No cap where the
    memory cannot be read."""
    memory = physical_memory_bytes()
    if not memory:
        return None
    d, batch_size = cfg.data, cfg.budget.batch_size
    length = PHONEBOOK_TOKENS if d.kind == "phonebook" else d.prompt_tokens + d.target_tokens
    per_sequence, fixed = length * TOKEN_BYTES, 0  # need = fixed + num_sequences × per_sequence
    parts = f"{d.num_sequences} sequences × {length} tokens × {TOKEN_BYTES} bytes (int64 ids and mask)"
    chunk = cfg.loss_chunk_tokens
    batch = d.num_sequences if batch_size is None else min(batch_size, d.num_sequences)
    if vocab and chunk and batch * length > chunk:  # chunked loss: one chunk's logits at a time
        fixed = chunk * vocab * LOGIT_BYTES
        parts += f" + logits of one loss chunk: {chunk} positions × vocab {vocab} × {LOGIT_BYTES} bytes"
    elif vocab:
        logits = length * vocab * LOGIT_BYTES  # of one sequence
        if batch_size is None:  # full batch: every sequence adds its logits
            per_sequence += logits
        else:
            fixed = batch * logits
        parts += f" + logits of one batch: {batch} × {length} tokens × vocab {vocab} × {LOGIT_BYTES} bytes"
    need, cap = fixed + d.num_sequences * per_sequence, int(memory * MEMORY_SHARE)
    if need <= cap:
        return None
    most = max(0, (cap - fixed) // per_sequence)
    return Problem("data.num_sequences", f"the trial needs at least {_bytes(need)} ({parts}), over the cap of "
                                         f"{_bytes(cap)} ({MEMORY_SHARE:.0%} of this machine's {_bytes(memory)}): "
                                         f"must be in [1, {most}] at {length} tokens a sequence, or use shorter "
                                         "targets" + (" or a smaller budget.batch_size" if vocab else ""))


def _bytes(n: float) -> str:
    """6.3e9 -> '6.3 GB', 1.6e15 -> '1.6 PB' (decimal units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def _expand_presets(data: Any, prefix: str) -> Any:
    """Replace `budget: {preset: NAME, ...}` by the preset's values overlaid with explicit keys."""
    if not isinstance(data, dict) or not isinstance(data.get("budget"), dict):
        return data
    budget = dict(data["budget"])
    name = budget.pop("preset", None)
    if name is None:
        return data
    if name not in BUDGET_PRESETS:
        path = f"{prefix}.budget.preset" if prefix else "budget.preset"
        raise ConfigError([Problem(path, f"unknown preset {name!r} (allowed: {', '.join(BUDGET_PRESETS)})")])
    return {**data, "budget": {**BUDGET_PRESETS[name], **budget}}
