"""The `memlaw` command line.

    memlaw trial FILE.yaml [--set k=v ...] [--out DIR] [--json] [--resume]
    memlaw validate FILE.yaml [--set k=v ...]

Heavy imports (torch, transformers, ray) happen inside the subcommands, so `memlaw --help` and
config errors answer at once. Exit codes: 0 done, 2 bad input (nothing was run), 1 the run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from trainables import metric_names as K
from trainables.schema import ConfigError

EXIT_BAD_INPUT = 2

SUMMARY_KEYS = (
    K.STEP, K.RANK, K.TRAINABLE_PARAMS, K.TARGET_TOKENS, K.LOSS_INIT, K.LOSS_FINAL, K.DELTA_LOSS,
    K.FRAC_P_GT_HALF, K.FRAC_SEQUENCES_CERTIFIED, K.TF_TOKEN_ACC, K.GREEDY_TOKEN_ACC, K.GREEDY_EXACT_MATCH,
    K.FIRST_SUBTHRESHOLD_POS, K.FIRST_GREEDY_ERROR_POS, K.STEPS_TO_CERTIFIED, K.BITS_PER_PARAM, K.WALL_S,
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _print_error(source: str, err: ConfigError) -> None:
    print(f"error: {source} is not valid:", file=sys.stderr)
    for problem in err.problems:
        print(f"  - {problem}", file=sys.stderr)


def _default_out(config_path: str) -> Path:
    stem = Path(config_path).stem
    return Path("memlaw-runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


# -- trial ---------------------------------------------------------------------------------------
def cmd_trial(args: argparse.Namespace) -> int:
    from trainables.config import TrialConfig

    try:
        cfg = TrialConfig.from_yaml(args.file, args.set)
    except ConfigError as err:
        _print_error(args.file, err)
        return EXIT_BAD_INPUT
    out = Path(args.out) if args.out else _default_out(args.file)
    return _run_trial(cfg, out, args)


def _run_trial(cfg, out: Path, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trainables.memorize import MemorizationTrial, TrialDiverged, latest_checkpoint

    resume_from = latest_checkpoint(out / "checkpoints") if args.resume else None
    if args.resume and resume_from is None:
        print(f"error: --resume: no checkpoint under {out / 'checkpoints'}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"memlaw trial: loading {cfg.model.name} ({cfg.adapter.placement} LoRA, rank {cfg.adapter.rank}, "
          f"{cfg.method.name}) ...", file=sys.stderr)
    try:
        trial = MemorizationTrial(cfg, out)
    except ConfigError as err:
        _print_error(args.file, err)
        return EXIT_BAD_INPUT
    bar = tqdm(total=cfg.budget.steps, initial=0, desc="train", unit="step", file=sys.stderr,
               dynamic_ncols=True, disable=None)

    def on_step(step: int, loss: float) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.update(0)

    def report(metrics: dict, checkpoint: str | None) -> None:
        bar.write(f"step {metrics[K.STEP]:>6}  loss {metrics[K.LOSS_FINAL]:.4f}  "
                  f"p>0.5 {metrics[K.FRAC_P_GT_HALF]:.3f}  certified {metrics[K.FRAC_SEQUENCES_CERTIFIED]:.3f}"
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
        print(json.dumps(result, indent=1))
    else:
        width = max(len(k) for k in SUMMARY_KEYS)
        for key in SUMMARY_KEYS:
            print(f"  {key:<{width}}  {_fmt(result.get(key))}")
    print(f"memlaw trial: wrote {out}/ (config.yaml, evals.jsonl, result.json, adapter/)", file=sys.stderr)
    return 0


# -- validate ------------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from trainables.config import TrialConfig

    try:
        cfg = TrialConfig.from_yaml(args.file, args.set)
        from trainables.model import check_against_model

        dims = check_against_model(cfg)
    except ConfigError as err:
        _print_error(args.file, err)
        return EXIT_BAD_INPUT
    print(f"ok: {args.file} is a valid trial (model {cfg.model.name}: hidden {dims.hidden}, {dims.layers} layers, "
          f"vocab {dims.vocab}; {cfg.adapter.placement} LoRA rank {cfg.adapter.rank}; {cfg.method.name}; "
          f"{cfg.budget.steps} steps)")
    return 0


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memlaw", description="How much can a LoRA adapter memorize? "
                                     "Trials, sweeps and the live Parametric Memory Law.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("trial", help="run one memorization trial in this process")
    p.add_argument("file", help="trial config (YAML), e.g. examples/trial_tiny.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set adapter.rank=8 (repeatable)")
    p.add_argument("--out", help="output folder (default memlaw-runs/<name>-<time>)")
    p.add_argument("--json", action="store_true", help="print the final result as JSON on stdout")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.set_defaults(func=cmd_trial)

    p = sub.add_parser("validate", help="check a config file without running it")
    p.add_argument("file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
