"""`memlaw trial` (one memorization trial in this process) and `memlaw validate` (a trial or sweep
file checked without running it). torch and transformers are imported inside the commands."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.cli.output import EXIT_BAD_INPUT, print_error
from trainables import metric_names as K
from trainables.schema import ConfigError, Problem


SUMMARY_KEYS = (
    K.STEP, K.RANK, K.TRAINABLE_PARAMS, K.TARGET_TOKENS, K.LOSS_INIT, K.LOSS_FINAL, K.DELTA_LOSS,
    K.FRAC_P_GT_HALF, K.FRAC_SEQUENCES_CERTIFIED, K.TF_TOKEN_ACC, K.GREEDY_TOKEN_ACC, K.GREEDY_EXACT_MATCH,
    K.FIRST_SUBTHRESHOLD_POS, K.FIRST_GREEDY_ERROR_POS, K.STEPS_TO_CERTIFIED, K.LOSS_CHANCE, K.BITS_ABOVE_CHANCE,
    K.BITS_ABOVE_CHANCE_PER_PARAM, K.CERTIFIED_BITS, K.BITS_PER_PARAM, K.WALL_S,
)
#: Printed beside a summary key: the paper's ΔL-based figure is labelled as such (docs/science.md §6).
SUMMARY_NOTES = {K.BITS_PER_PARAM: "  (the paper's ΔL-based figure; counts overconfidence undone)"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _default_out(config_path: str) -> Path:
    """A new folder per run: two runs in the same second (a fast machine, a script) get -2, -3, ...
    rather than one refusing the other's folder."""
    base = Path("memlaw-runs") / f"{Path(config_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


# -- trial ---------------------------------------------------------------------------------------
def cmd_trial(args: argparse.Namespace) -> int:
    from trainables.config import TrialConfig

    try:
        cfg = TrialConfig.from_yaml(args.file, args.set)
    except ConfigError as err:
        print_error(args.file, err)
        return EXIT_BAD_INPUT
    out = Path(args.out) if args.out else _default_out(args.file)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file, not a folder", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.resume:
        existing = _trial_files_in(out)
        if existing and not args.force:
            print(f"error: {out} already holds a trial ({', '.join(existing)}): use --resume to continue it or "
                  "--force to overwrite it", file=sys.stderr)
            return EXIT_BAD_INPUT
        _clear_trial_files(out, existing)
    if not args.json:
        return _run_trial(cfg, out, args)
    answer = sys.stdout  # stdout carries the JSON alone: what libraries print (DeepSpeed's accelerator
    with contextlib.redirect_stdout(sys.stderr):  # warning, on the first build of a preset) goes to stderr
        return _run_trial(cfg, out, args, answer)


#: What `memlaw trial` writes into its folder (trainables/memorize.py).
TRIAL_FILES = ("config.yaml", "evals.jsonl", "result.json", "adapter", "checkpoints")


def _trial_files_in(out: Path) -> list[str]:
    return [name for name in TRIAL_FILES if (out / name).exists()] if out.is_dir() else []


def _clear_trial_files(out: Path, names: list[str]) -> None:
    """--force: remove the old trial's files (only those memlaw writes), so that no old checkpoint,
    evaluation or result outlives the trial that overwrites it."""
    import shutil

    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _checkpoint_mismatch(cfg, out: Path, checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot continue `cfg` (it was trained with another config), checked before
    anything in the folder is written, so a refusal leaves the folder's config matching its results."""
    import yaml

    from orchestrator.records.trial_record import flatten

    try:
        saved = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))["config_hash"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"the checkpoint {checkpoint} cannot be read ({err})"
    if saved == cfg.config_hash():
        return None
    try:
        before = flatten(yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, AttributeError):
        before = {}
    now, used = flatten(cfg.to_dict()), flatten(_as_run(cfg).to_dict())  # config.yaml holds the values used
    fields = [f"{k} {before[k]!r} -> {now.get(k)!r}" for k in sorted(before)
              if before[k] != now.get(k) and before[k] != used.get(k)]
    return (f"the checkpoint in {out} was trained with another config ({'; '.join(fields) or 'fields unknown'}); "
            f"nothing was changed: resume with the same file and --set values, or use --force to start over")


def _as_run(cfg):
    """`cfg` with its run-time choices filled in as a trial here makes them (trainables/resolved.py),
    or `cfg` itself when they cannot be made (a model that does not load, no GPU for device: cuda)."""
    from trainables.resolved import resolved_here

    try:
        return resolved_here(cfg)
    except (ConfigError, OSError, ValueError):
        return cfg


def _run_trial(cfg, out: Path, args: argparse.Namespace, answer=None) -> int:
    from tqdm import tqdm

    from trainables.memorize import MemorizationTrial, TrialDiverged, latest_checkpoint

    resume_from = latest_checkpoint(out / "checkpoints") if args.resume else None
    if args.resume and resume_from is None:
        print(f"error: --resume: no checkpoint under {out / 'checkpoints'}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if resume_from is not None and (problem := _checkpoint_mismatch(cfg, out, resume_from)):
        print(f"error: --resume: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"memlaw trial: loading {cfg.model.name} ({cfg.adapter.placement} LoRA, rank {cfg.adapter.rank}, "
          f"{cfg.method.name}) ...", file=sys.stderr)
    try:
        trial = MemorizationTrial(cfg, out)
    except ConfigError as err:
        print_error(args.file, err)
        return EXIT_BAD_INPUT
    bar = tqdm(total=cfg.budget.steps, initial=0, desc="train", unit="step", file=sys.stderr,
               dynamic_ncols=True, disable=None)

    def on_step(step: int, loss: float) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.update(0)

    def report(metrics: dict, checkpoint: str | None) -> None:
        bar.write(f"step {metrics[K.STEP]:>6}  loss {metrics[K.LOSS_FINAL]:.4f}  "
                  f"p>0.5 {metrics[K.FRAC_P_GT_HALF]:.3f}  certified {metrics[K.FRAC_SEQUENCES_CERTIFIED]:.3f}  "
                  f"bits>chance {_fmt(metrics.get(K.BITS_ABOVE_CHANCE))}"
                  + (f"  greedy EM {metrics[K.GREEDY_EXACT_MATCH]:.3f}" if metrics[K.GREEDY_EVALUATED] else ""),
                  file=sys.stderr)

    try:
        result = trial.run(report=report, resume_from=resume_from, on_step=on_step)
    except TrialDiverged as err:
        bar.close()
        print(f"error: the trial diverged: {err}", file=sys.stderr)
        return 1
    bar.close()
    if args.json:
        print(json.dumps(result, indent=1), file=answer or sys.stdout)
    else:
        width = max(len(k) for k in SUMMARY_KEYS)
        for key in SUMMARY_KEYS:
            print(f"  {key:<{width}}  {_fmt(result.get(key))}{SUMMARY_NOTES.get(key, '')}")
    print(f"memlaw trial: wrote {out}/ (config.yaml, evals.jsonl, result.json, adapter/)", file=sys.stderr)
    return 0


# -- validate ------------------------------------------------------------------------------------
def _is_sweep_file(path: str) -> bool:
    from trainables.yaml_input import load_yaml_mapping

    try:
        data = load_yaml_mapping(path)
    except ConfigError:
        return False
    return "space" in data or "search" in data or ("trial" in data and "name" in data)


def _check_not_empty(path: str) -> None:
    """An empty file (no YAML document: nothing, or only comments) is a mistake, not a default trial."""
    import yaml

    from trainables.yaml_input import load_yaml_mapping

    if load_yaml_mapping(path):  # also raises for a missing, binary, non-YAML or non-mapping file
        return
    with open(path, encoding="utf-8") as fh:
        if yaml.safe_load(fh) is None:
            raise ConfigError([Problem("", f"{path}: is empty (no YAML document); a trial or sweep file "
                                           "needs at least one key")])


def cmd_validate(args: argparse.Namespace) -> int:
    from trainables.config import TrialConfig

    try:
        if not args.set:  # `memlaw trial empty.yaml --set ...` is a trial of overrides on the defaults
            _check_not_empty(args.file)
    except ConfigError as err:
        print_error(args.file, err)
        return EXIT_BAD_INPUT
    if _is_sweep_file(args.file):
        return _validate_sweep(args.file)
    try:
        cfg = TrialConfig.from_yaml(args.file, args.set)
        from trainables.model import check_against_model

        dims = check_against_model(cfg)
    except ConfigError as err:
        print_error(args.file, err)
        return EXIT_BAD_INPUT
    print(f"ok: {args.file} is a valid trial (model {cfg.model.name}: hidden {dims.hidden}, {dims.layers} layers, "
          f"vocab {dims.vocab}; {cfg.adapter.placement} LoRA rank {cfg.adapter.rank}; {cfg.method.name}; "
          f"{cfg.budget.steps} steps)")
    return 0


def _validate_sweep(path: str) -> int:
    from orchestrator.config.preflight import load_sweep

    try:
        sweep = load_sweep(path)
    except ConfigError as err:
        print_error(path, err)
        return EXIT_BAD_INPUT
    size = sweep.trial_count()  # adaptive: at most (its stopping rule may end it sooner)
    print(f"ok: {path} is a valid sweep {sweep.name!r}: {size} trials ({sweep.search.kind} over {sweep.space}), "
          f"storage {sweep.experiment_uri}")
    from orchestrator.experiment.folder import exists

    if exists(sweep.experiment_uri):  # valid, but `memlaw sweep` would refuse it as it stands
        print(f"note: the experiment {sweep.experiment_uri} exists: `memlaw sweep {path}` needs --resume (continue "
              f"it with this same file) or --new (a fresh experiment under the next free name)")
    return 0
