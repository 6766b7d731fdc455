"""End-to-end trials on a tiny model: recall, exact greedy decoding, adapters, resume, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import torch

from conftest import EXAMPLES, memlaw_cmd, memlaw_in_process
from trainables import metric_names as K
from trainables.adapters import load_adapter
from trainables.backends import SingleProcess
from trainables.config import TrialConfig
from trainables.memorize import MemorizationTrial, greedy_decode, latest_checkpoint, train
from trainables.model import load_base
from trainables.resolved import resolved_here


def small_cfg(**over) -> TrialConfig:
    base = {"adapter": {"placement": "peft", "rank": 8}, "data": {"target_tokens": 16, "num_sequences": 8},
            "budget": {"steps": 40}, "eval": {"every": 10, "checkpoint_every": 1}}
    for key, value in over.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return TrialConfig.from_dict(base)


def test_tiny_example_reaches_full_recall_and_certificate_implies_exact(tmp_path):
    cfg = TrialConfig.from_yaml(str(EXAMPLES / "trial_tiny.yaml"))
    result = train(cfg, tmp_path)
    assert result[K.GREEDY_EXACT_MATCH] >= 0.99
    assert result[K.DELTA_LOSS] > 0
    rows = result[K.PER_SEQUENCE]
    assert len(rows) == cfg.data.num_sequences
    for row in rows:
        if row[K.SEQ_CERTIFIED]:
            assert row[K.SEQ_GREEDY_EXACT], row
            # the first sub-threshold position bounds the first greedy error from below
        assert row[K.SEQ_FIRST_SUBTHRESHOLD] <= row[K.SEQ_FIRST_GREEDY_ERROR]
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk[K.GREEDY_EXACT_MATCH] == result[K.GREEDY_EXACT_MATCH]
    evals = [json.loads(line) for line in (tmp_path / "evals.jsonl").read_text().splitlines()]
    assert [e[K.STEP] for e in evals] == list(range(10, cfg.budget.steps + 1, 10))
    half = max(e[K.STEP] for e in evals if 2 * e[K.STEP] <= cfg.budget.steps)  # ΔL at half the budget
    half_delta = next(e[K.DELTA_LOSS] for e in evals if e[K.STEP] == half)
    assert (result[K.DELTA_LOSS_HALF_STEP], result[K.DELTA_LOSS_HALF]) == (half, half_delta)
    assert result[K.CONVERGENCE_RATIO] == result[K.DELTA_LOSS] / half_delta
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert TrialConfig.from_yaml(str(tmp_path / "config.yaml")) == resolved_here(cfg)  # the values it used


def _hand_rolled_greedy(model, prompt, n):
    ids, out = torch.tensor([prompt]), []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def test_greedy_decoding_matches_a_hand_rolled_argmax_loop_and_never_stops_on_eos(tmp_path):
    """generate() must not ban or stop on EOS: a continuation full of EOS ids still runs to the end."""
    cfg = small_cfg(data={"target_tokens": 12, "num_sequences": 3})
    trial = MemorizationTrial(cfg, tmp_path)
    with torch.no_grad():
        for name, p in trial.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a non-trivial adapter
        lm_head = trial.model.get_base_model().lm_head
        lm_head.weight[2] *= 6  # make EOS (id 2) the argmax often
    trial.model.eval()
    rows = [0, 1, 2]
    generated = greedy_decode(trial.model, trial.corpus, rows)
    assert generated.shape == (3, 12)
    for i in rows:
        assert generated[i].tolist() == _hand_rolled_greedy(trial.model, trial.data.prompts[i], 12)
    assert bool((generated[:, :-1] == 2).any()), "the test needs EOS before the end to mean anything"


def test_paper_adapter_saves_and_loads_in_peft_format(tmp_path):
    cfg = small_cfg(adapter={"placement": "paper", "rank": 4, "target_modules": ["q_proj"]}, budget={"steps": 20})
    trial = MemorizationTrial(cfg, tmp_path)
    assert trial.n_params == 2 * 128 * 4  # d_in·r + r·d_out, read from the model
    trial.run()
    batch = trial.corpus.batch([0, 1])
    trial.model.eval()
    with torch.no_grad():
        expected = trial.model(input_ids=batch.ids, attention_mask=batch.attn).logits
    base, _ = load_base(cfg.model, "float32", torch.device("cpu"))
    loaded = load_adapter(tmp_path / "adapter", base)
    with torch.no_grad():
        got = loaded(input_ids=batch.ids, attention_mask=batch.attn).logits
    torch.testing.assert_close(got, expected)
    with torch.no_grad(), loaded.disable_adapter():
        plain = loaded(input_ids=batch.ids, attention_mask=batch.attn).logits
    assert not torch.allclose(plain, expected), "the trained adapter should change the logits"


def _comparable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != K.WALL_S}


@pytest.mark.slow
def test_a_killed_trial_resumes_to_the_same_metrics(tmp_path):
    overrides = ["--set", "adapter.placement=peft", "--set", "adapter.rank=8", "--set", "data.target_tokens=16",
                 "--set", "data.num_sequences=8", "--set", "budget.steps=120", "--set", "eval.every=10",
                 "--set", "eval.checkpoint_every=1", "--set", "adapter.dropout=0.1"]
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text("model: {name: tiny-s}\n")
    killed = tmp_path / "killed"
    proc = subprocess.Popen(memlaw_cmd("trial", str(cfg_file), "--out", str(killed), *overrides),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ckpt = latest_checkpoint(killed / "checkpoints")
        if ckpt is not None and int(ckpt.name.split("_")[1]) >= 30:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = int(latest_checkpoint(killed / "checkpoints").name.split("_")[1])
    assert 30 <= interrupted_at < 120, "the trial was not killed mid-way"
    assert not (killed / "result.json").exists()
    done = subprocess.run(memlaw_cmd("trial", str(cfg_file), "--out", str(killed), "--resume", "--json", *overrides),
                          capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert done.returncode == 0, done.stderr
    resumed = json.loads(done.stdout)

    cfg = TrialConfig.from_yaml(str(cfg_file), overrides[1::2])
    straight = train(cfg, tmp_path / "straight")
    assert _comparable(resumed) == _comparable(straight)
    lines = (killed / "evals.jsonl").read_text().splitlines()
    assert [json.loads(x)[K.STEP] for x in lines] == list(range(10, 121, 10))


BAD_TRIALS = [
    ("adapter: {rank: 0}", "adapter.rank", "[1, 65536]"),
    ("adapter: {rank: 512}", "adapter.rank", "[1, 128]"),
    ("adapter: {placement: paper, layer: 7}", "adapter.layer", "[0, 1]"),
    ("adaptor: {rank: 4}", "adaptor", "did you mean 'adapter'"),
    ("budget: {steps: many}", "budget.steps", "integer"),
    ("data: {kind: text, text_file: /nonexistent/x.txt}", "data.text_file", "no such file"),
    ("data: {kind: text, target_tokens: 100000}", "data.target_tokens", "must be <="),
    ("method: {name: memft, mix: 2}", "method.mix", "[0.0, 1.0]"),
]


@pytest.mark.parametrize("text,field,allowed", BAD_TRIALS)
def test_bad_trial_files_fail_before_any_model_is_built(tmp_path, text, field, allowed):
    cache = tmp_path / "cache"
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    run = memlaw_in_process("trial", str(path), "--out", str(tmp_path / "out"), env={"MEMLAW_CACHE": str(cache)})
    assert run.returncode == 2, run.stderr
    assert field in run.stderr and allowed in run.stderr, run.stderr
    assert not (cache / "models").exists() or not any((cache / "models").iterdir()), "a model was built"
    assert not (tmp_path / "out" / "result.json").exists()


# -- backends: one loop, composed ------------------------------------------------------------------
def tiny_cfg(**over) -> TrialConfig:
    return small_cfg(model={"name": "tiny-xs"}, data={"target_tokens": 8, "num_sequences": 2},
                     budget={"steps": 12}, eval={"every": 3, "checkpoint_every": 2}, **over)


def test_the_single_process_backend_builds_exactly_one_optimizer(tmp_path, monkeypatch):
    built = []
    init = torch.optim.Optimizer.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Optimizer, "__init__", counting)
    trial = MemorizationTrial(tiny_cfg(), tmp_path)
    assert built == ["AdamW"]
    stepped = {id(p) for group in trial.backend.optimizer.param_groups for p in group["params"]}
    assert stepped == {id(p) for p in trial.model.parameters() if p.requires_grad}
    assert trial.forward_model is trial.model


class RecordingBackend(SingleProcess):
    """One process playing a rank: each hook that may be a collective is logged, in call order."""

    def __init__(self, writes_outputs: bool):
        super().__init__()
        self.writes_outputs, self.calls = writes_outputs, []

    def _log(self, name: str, *args):
        self.calls.append(name)
        return getattr(super(), name)(*args)

    def prepare(self, *args):
        return self._log("prepare", *args)

    def update(self, loss):
        return self._log("update", loss)

    def skip_update(self):
        return self._log("skip_update")

    def save_state(self, folder):
        return self._log("save_state", folder)

    def load_state(self, folder):
        return self._log("load_state", folder)

    def gathered(self):
        return self._log("gathered")

    def barrier(self):
        return self._log("barrier")


def test_every_rank_walks_the_same_collectives_whether_or_not_it_writes(tmp_path):
    """Rank 0 (writes) and rank 1 (does not) call the same hooks in the same order, from a fresh
    start and from a mid-way checkpoint, reach the same result, and only the writer leaves trial files."""
    cfg = tiny_cfg(method={"name": "memft", "when_all_learned": "skip"})
    mid = tmp_path / "mid"

    def keep_mid(metrics, checkpoint):
        if checkpoint and metrics[K.STEP] == 6 and not mid.exists():
            shutil.copytree(checkpoint, mid)

    calls, results = {}, {}
    for writes in (True, False):  # the writer first: its step-6 checkpoint is the one both resume
        for resume in (False, True):
            backend, out = RecordingBackend(writes), tmp_path / f"writes-{writes}" / f"resume-{resume}"
            results[writes, resume] = train(cfg, out, report=keep_mid, resume_from=mid if resume else None,
                                            backend=backend)
            calls[writes, resume] = backend.calls
    for resume in (False, True):
        assert calls[True, resume] == calls[False, resume]
        assert _comparable(results[True, resume]) == _comparable(results[False, resume])
    assert _comparable(results[True, True]) == _comparable(results[True, False])
    fresh, resumed = calls[True, False], calls[True, True]
    assert fresh.count("prepare") == 1 and fresh.count("update") + fresh.count("skip_update") == 12
    assert fresh.count("save_state") == fresh.count("barrier") == 2  # evaluations 2 and 4: steps 6, 12
    assert fresh.count("gathered") == 3  # the adapter of each checkpoint, then the final one
    assert resumed.count("load_state") == 1 and resumed.count("update") + resumed.count("skip_update") == 6
    assert (tmp_path / "writes-True" / "resume-False" / "result.json").is_file()
    # issue 24 item 7: resumed into a fresh folder (as Tune resumes on another node or session), the
    # evaluation history is whole: the checkpoint carries the rows before it
    rows = {resume: [_comparable(json.loads(line)) for line in
                     (tmp_path / "writes-True" / f"resume-{resume}" / "evals.jsonl").read_text().splitlines()]
            for resume in (False, True)}
    assert len(rows[True]) == 4 and rows[True] == rows[False]
    assert not [p for p in (tmp_path / "writes-False").rglob("*") if p.suffix in (".json", ".jsonl", ".yaml")]


@pytest.mark.slow
def test_trial_json_is_the_only_thing_on_stdout_even_on_a_new_preset(tmp_path):
    """Issue 24, item 10: the first `trial --json` on a preset printed DeepSpeed's accelerator warning
    on stdout, before the JSON. In a fresh model cache, so the preset is built in this run."""
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text("model: {name: tiny-xs}\nadapter: {rank: 1}\ndata: {target_tokens: 8}\n"
                        "budget: {preset: cpu, steps: 2}\neval: {every: 1}\n")
    env = {**os.environ, "MEMLAW_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(memlaw_cmd("trial", str(cfg_file), "--out", str(tmp_path / "out"), "--json"),
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)[K.STEP] == 2  # the whole of stdout is one JSON document


class _Hostile:
    """A pickle that runs code when loaded: what a hostile checkpoint would hold."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_checkpoint_is_refused_without_running_its_code(tmp_path):
    """README: memlaw's own training state loads with torch.load(weights_only=True) (issue 28 item 9)."""
    import pickle

    cfg = tiny_cfg()
    kept = tmp_path / "kept"

    def keep(metrics, checkpoint):
        if checkpoint and not kept.exists():
            shutil.copytree(checkpoint, kept)

    train(cfg, tmp_path / "first", report=keep)
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Hostile(str(marker))}, kept / "training_state.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train(cfg, tmp_path / "again", resume_from=kept)
    assert not marker.exists()


def test_the_pure_math_modules_import_neither_ray_nor_deepspeed():
    """README: trainables/memft.py, recall.py and data.py import neither Ray nor DeepSpeed. In a fresh
    process with both blocked (an import of either raises), so the check cannot pass by accident."""
    import sys

    code = ("import sys\n"
            "for name in ('ray', 'deepspeed'): sys.modules[name] = None\n"
            "import trainables.memft, trainables.recall, trainables.data\n"
            "print(sorted(m for m, v in sys.modules.items() if m.split('.')[0] in ('ray', 'deepspeed') and v))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


def test_two_trials_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    """`memlaw trial FILE` twice within one second (a fast machine, a script) must not collide on the
    default folder: the second gets a -2 suffix instead of refusing the first's trial."""
    import time as time_module
    from pathlib import Path

    from orchestrator.cli.trial_commands import _default_out

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time_module, "strftime", lambda fmt, *a: "20261206-200008")
    first = _default_out("examples/trial_tiny.yaml")
    assert first == Path("memlaw-runs") / "trial_tiny-20261206-200008"
    first.mkdir(parents=True)
    second = _default_out("examples/trial_tiny.yaml")
    assert second == Path("memlaw-runs") / "trial_tiny-20261206-200008-2" and not second.exists()
    second.mkdir()
    assert _default_out("examples/trial_tiny.yaml").name == "trial_tiny-20261206-200008-3"
