"""Bad input never reaches Ray (issue 7, R5): a corpus of malformed trial and sweep files under
tests/data/bad_inputs/, each rejected by `memlaw validate` with exit code 2 and a message that
names the dotted field and what is allowed.

Every corpus file says what it must produce in its first line,

    # expect: adapter.rank | must be in [1, 65536]

(the dotted field, then a fragment of the message; an empty field for a whole-file error such as
a YAML syntax error). A file that cannot hold a comment (binary bytes, a non-UTF-8 file, an empty
file) has the same line, without `# expect:`, in a sidecar `NAME.expect`. A file's kind is the part
of its name before `__` (unknown-key, inverted-range, ...).

Each file goes through the CLI's own code in this process (`orchestrator.cli.main.main`), and a sample
of them through `python -m orchestrator.cli.main validate FILE` as a subprocess. Either way: exit code
2, the expected problem on stderr, no traceback, Ray neither imported nor started, and no tiny
model folder built in the session's MEMLAW_CACHE (tests/conftest.py).

Input limits (issue 14, trainables/schema.py): an alias bomb, deep nesting and a 50 MB file are
refused in a fresh process within 1 s and 100 MB of extra memory (peak RSS, ru_maxrss), naming
the file and the limit; every message stays short whatever the file quotes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, memlaw_cmd, print_figure
from orchestrator.cli import main as cli
from orchestrator.cli.output import EXIT_BAD_INPUT

CORPUS = Path(__file__).resolve().parent / "data" / "bad_inputs"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix != ".expect")
SIDECAR = ".expect"
#: What the corpus must cover (issue 7, R5): the kinds named there, as file-name prefixes.
REQUIRED_KINDS = {"unknown-key", "wrong-type", "out-of-range", "inverted-range", "empty-grid",
                  "unknown-space", "unknown-method", "unknown-model", "impossible-resources",
                  "storage-scheme", "yaml-syntax", "not-yaml", "empty-file", "input-limit"}
#: Run as a real subprocess too: one cheap file-level error, one sweep, one needing the model's shape.
#: (and one input limit; every file of the corpus also runs in process: a CLI process costs ~6 s of imports)
SUBPROCESS_SAMPLE = ("not-yaml__binary.yaml", "unknown-key__sweep-top.yaml",
                     "impossible-resources__trial-rank-over-hidden.yaml", "input-limit__alias-bomb.yaml")

_seen: Counter = Counter()  # outcomes for the closing figure


def kind_of(path: Path) -> str:
    return path.name.split("__", 1)[0]


def expectation(path: Path) -> tuple[str, str]:
    """(dotted field, message fragment) from the sidecar or the file's first line."""
    sidecar = path.with_name(path.name + SIDECAR)
    if sidecar.exists():
        line = sidecar.read_text(encoding="utf-8").strip()
    else:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# expect:"), f"{path.name}: first line must be '# expect: FIELD | TEXT'"
        line = first[len("# expect:"):]
    field, fragment = (part.strip() for part in line.split("|", 1))
    return field, fragment


def problems_on(stderr: str, path: str) -> list[str]:
    """The problems `memlaw validate` printed, one string each (a problem may span several lines)."""
    lines = stderr.splitlines()
    header = f"error: {path} is not valid:"
    assert header in lines, f"no '{header}' line in:\n{stderr}"
    blocks: list[str] = []
    for line in lines[lines.index(header) + 1:]:
        if line.startswith("  - "):
            blocks.append(line[4:])
        elif blocks:
            blocks[-1] += "\n" + line
    return blocks


def assert_expected_problem(stderr: str, path: Path) -> None:
    field, fragment = expectation(path)
    problems = problems_on(stderr, str(path))
    # a whole-file problem names the file; a field problem starts with its dotted field
    prefix = f"{path}: " if not field else f"{field}: "
    hits = [p for p in problems if p.startswith(prefix) and fragment in p]
    assert hits, f"expected a problem '{prefix}...{fragment}...', got:\n" + "\n".join(problems)


def model_folders() -> set[str]:
    from trainables.model import cache_root

    models = cache_root() / "models"
    return set(os.listdir(models)) if models.is_dir() else set()


def ray_started() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


# -- the corpus itself ---------------------------------------------------------------------------
def test_corpus_is_as_large_as_docs_reliability_says():
    """docs/reliability.md quotes the corpus's size (R5): the figure and the files agree."""
    import re

    quoted = re.search(r"R5: (\d+) malformed files in (\d+) kinds", (REPO / "docs" / "reliability.md").read_text())
    assert quoted, "docs/reliability.md no longer states the corpus's size (R5)"
    assert (len(FILES), len({kind_of(p) for p in FILES})) == (int(quoted[1]), int(quoted[2]))


def test_corpus_covers_every_kind_and_says_what_it_expects():
    assert REQUIRED_KINDS <= {kind_of(p) for p in FILES}, REQUIRED_KINDS - {kind_of(p) for p in FILES}
    for path in FILES:
        field, fragment = expectation(path)
        assert fragment, f"{path.name}: empty message fragment"
        assert field == "" or " " not in field, f"{path.name}: field {field!r} is not a dotted name"
    orphans = [p.name for p in CORPUS.glob(f"*{SIDECAR}") if not p.with_suffix("").exists()]
    assert not orphans, f"sidecars without a file: {orphans}"


# -- in process: the CLI's own code --------------------------------------------------------------
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_validate_rejects_in_process(path, capsys):
    ray_running = ray_started()  # another test may have started Ray (that Ray is never imported: below)
    before = model_folders()
    code = cli.main(["validate", str(path)])  # a crash raises here, and fails the test with its traceback
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT, f"accepted (exit {code}):\n{out}{err}"
    assert not out.startswith("ok:"), out
    assert_expected_problem(err, path)
    assert "Traceback" not in err
    assert ray_running or not ray_started(), "validation started Ray"
    assert model_folders() == before, "validation built a model folder"
    _seen[kind_of(path)] += 1


@pytest.mark.slow  # spawns the CLI: a fresh process: sys.modules there is the point
def test_validation_never_imports_ray():
    """The whole corpus through `validate` in a fresh process where Ray (and DeepSpeed) cannot be
    imported: every file is refused with exit 2 and no traceback, and Ray is still not loaded. (In
    this process another test may have imported Ray already, so only a fresh one can tell.)"""
    code = ("import contextlib, io, json, sys\n"
            "for name in ('ray', 'deepspeed'): sys.modules[name] = None\n"
            "from orchestrator.cli.main import main\n"
            "codes = {}\n"
            "for path in sys.argv[1:]:\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
            "        codes[path] = [main(['validate', path]), 'Traceback' in err.getvalue()]\n"
            "loaded = sorted(m for m, v in sys.modules.items() if m.split('.')[0] in ('ray', 'deepspeed') and v)\n"
            "print(json.dumps({'codes': codes, 'loaded': loaded}))\n")
    done = subprocess.run([sys.executable, "-c", code, *map(str, FILES)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["loaded"] == []
    assert {p: c for p, c in result["codes"].items() if c != [EXIT_BAD_INPUT, False]} == {}
    assert len(result["codes"]) == len(FILES)


# -- a sample through the real command line ------------------------------------------------------
@pytest.mark.slow  # spawns the CLI: the exit code of a real `memlaw validate` process is the point
@pytest.mark.parametrize("name", SUBPROCESS_SAMPLE)
def test_validate_rejects_as_a_subprocess(name):
    path = CORPUS / name
    before = model_folders()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}  # MEMLAW_CACHE: the session's
    run = subprocess.run(memlaw_cmd("validate", str(path)), capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=120)
    assert run.returncode == 2, f"exit {run.returncode}\n{run.stdout}{run.stderr}"
    assert run.stdout == ""
    assert "Traceback" not in run.stderr, run.stderr
    assert "local Ray instance" not in run.stderr, run.stderr  # what `ray.init` says when it starts one
    assert_expected_problem(run.stderr, path)
    assert model_folders() == before, "validation built a model folder"
    _seen["subprocess"] += 1


# -- input limits: refused at once, in bounded memory ---------------------------------------------
#: `memlaw validate FILE` in a fresh process, measured around the command itself: wall time, and
#: the growth of the peak resident set (ru_maxrss, KiB on Linux) past what the imports took.
PROBE = """
import json, resource, sys, time
import yaml
import trainables.config
from orchestrator.cli import main as cli
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
code = cli.main(["validate", sys.argv[1]])
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "wall_s": wall, "extra_mb": (peak - before) / 1024, "peak_mb": peak / 1024}))
"""
AS_CAP = 3 << 30  # a regression fails this test with MemoryError instead of taking the machine


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_CAP, AS_CAP))


def limit_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A file past one input limit, and the fragment its refusal must show."""
    path = tmp_path / f"{kind}.yaml"
    if kind == "alias-bomb":  # the corpus file: 9 lines, 9**9 strings by reference
        path.write_bytes((CORPUS / "input-limit__alias-bomb.yaml").read_bytes())
        return path, "anchors and aliases are not allowed in a config file"
    if kind == "deep-1000":
        path.write_text("method: {name: " + "[" * 1000 + "]" * 1000 + "}\n")
        return path, "nested deeper than the limit of 50 levels"
    if kind == "deep-block-1000":
        path.write_text("".join("  " * i + f"k{i}:\n" for i in range(1000)) + "  " * 1000 + "x: 1\n")
        return path, "nested deeper than the limit of 50 levels"
    with open(path, "w") as fh:  # 50 MB of a plausible list
        fh.write("data:\n  kind: random\nnotes:\n")
        line = "  - " + "x" * 60 + "\n"
        fh.write(line * (50_000_000 // len(line)))
    return path, "over the limit of a config file (1048576 bytes, 1 MiB)"


LIMIT_CASES = ("alias-bomb", "deep-1000", "deep-block-1000", "50-mb")


@pytest.mark.parametrize("kind", LIMIT_CASES)
def test_input_limits_refuse_at_once_in_bounded_memory(tmp_path, kind, request):
    path, fragment = limit_file(tmp_path, kind)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=60, preexec_fn=_cap_memory)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout.splitlines()[-1])
    assert figures["code"] == 2, run.stderr[-2000:]
    problems = problems_on(run.stderr, str(path))
    assert len(problems) == 1 and problems[0].startswith(f"{path}: ") and fragment in problems[0], problems
    assert "Traceback" not in run.stderr and len(run.stderr) < 2000, run.stderr[-2000:]
    assert figures["wall_s"] < 1.0 and figures["extra_mb"] < 100, figures
    _seen["limits"] += 1
    print_figure(request, f"input limit {kind} ({path.stat().st_size} bytes): refused in "
                          f"{figures['wall_s'] * 1000:.0f} ms, peak RSS {figures['extra_mb']:.1f} MB above the "
                          f"{figures['peak_mb'] - figures['extra_mb']:.0f} MB of the imports")


@pytest.mark.slow  # spawns the CLI: each command in a memory-capped process
def test_the_alias_bomb_is_refused_by_every_command_that_reads_a_file(tmp_path):
    """trial, sweep and validate read trial and sweep files through the same loader: exit 2 each."""
    bomb = str(CORPUS / "input-limit__alias-bomb.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    for args in (("validate", bomb), ("trial", bomb, "--out", str(tmp_path / "t")), ("sweep", bomb)):
        run = subprocess.run(memlaw_cmd(*args), capture_output=True, text=True, cwd=REPO, env=env, timeout=60,
                             preexec_fn=_cap_memory)
        assert run.returncode == 2, (args, run.stderr[-2000:])
        assert "anchors and aliases are not allowed" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "t").exists()


def test_error_messages_stay_short_whatever_the_file_quotes(tmp_path, capsys):
    """A 500 KB string where a number belongs, a 50,000-item list where a name belongs and a
    100,000-character key are quoted in about 200 characters each, with their size; of 2,000
    unknown keys, 50 problems are printed and the rest counted."""
    loud = tmp_path / "loud.yaml"
    loud.write_text(f"adapter: {{rank: '{'x' * 500_000}'}}\nmethod: {{name: [{', '.join(['sft'] * 50_000)}]}}\n"
                    f"? {'k' * 100_000}\n: 1\n")
    many = tmp_path / "many.yaml"
    many.write_text("".join(f"extra{i}: {i}\n" for i in range(2000)))
    for path in (loud, many):
        assert path.stat().st_size < 1 << 20
        assert cli.main(["validate", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err) < 20_000, len(err)
    assert max(len(line) for line in err.splitlines()) < 2100
    assert "adapter.rank: must be an integer, got str 'xxx" in err and "(500000 chars)" in err
    assert "method.name: must be one of 'sft'" in err and "(50000 items)" in err
    assert "kkk... (100000 chars): unknown key" in err
    assert "  ... and 1950 more problems" in err


@pytest.fixture(scope="module", autouse=True)
def _figure(request):
    """One line at the end: files, kinds, what was checked."""
    yield
    kinds = Counter(kind_of(p) for p in FILES)
    sections = Counter("trial" if "__trial" in p.name else "sweep" if "__sweep" in p.name else "file"
                       for p in FILES)
    in_process = sum(v for k, v in _seen.items() if k not in ("subprocess", "limits"))
    line = (f"bad inputs: {len(FILES)} files, {len(kinds)} kinds (trial {sections['trial']}, sweep "
            f"{sections['sweep']}, whole-file {sections['file']}); rejected with exit 2 and the expected "
            f"field: {in_process} in process, {_seen['subprocess']}/{len(SUBPROCESS_SAMPLE)} via the CLI "
            f"subprocess; each with Ray neither imported nor started and no model folder built")
    print_figure(request, line)



def test_grid_size_is_refused_from_the_axes_lengths_before_any_point_is_built(monkeypatch):
    """Issue 24, item 6: a 10⁷-point grid is judged by the product of its axes' lengths; not one
    point is expanded (GridSpace.points would raise), so the refusal is immediate whatever the size."""
    from orchestrator.config.sweep import SweepConfig
    from orchestrator.search.kinds import MAX_GRID_TRIALS
    from search_spaces.law_grid import GridSpace
    from trainables.schema import ConfigError

    def no_points(self):
        raise AssertionError("a grid point was built before the size check")

    monkeypatch.setattr(GridSpace, "points", no_points)
    axes = {"adapter.rank": list(range(1, 101)), "data.target_tokens": list(range(16, 116)),
            "seed": list(range(1000))}
    import time

    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        SweepConfig.from_dict({"name": "huge", "trial": {"model": {"name": "tiny-s"}}, "space_overrides": axes})
    assert time.perf_counter() - t0 < 1.0  # the bound (measured: milliseconds; 40,000 points took 40 s)
    (problem,) = err.value.problems
    assert problem.field == "space_overrides"
    assert "10,000,000 trials" in problem.message and f"at most {MAX_GRID_TRIALS:,}" in problem.message
    # num_samples counts: a grid under the limit times repeats over it is refused too
    with pytest.raises(ConfigError, match="20,000 trials"):
        SweepConfig.from_dict({"name": "rep", "trial": {"model": {"name": "tiny-s"}}, "num_samples": 2,
                               "space_overrides": {"adapter.rank": list(range(1, 101)),
                                                   "data.target_tokens": list(range(16, 116))}})


@pytest.mark.parametrize("tokens", ["0", "-5", "10000000000000"])
def test_plan_refuses_a_token_count_out_of_range_in_one_line(tokens, capsys, tmp_path):
    """Issue 24, item 10: `memlaw plan --tokens 0` was a ValueError traceback."""
    from test_structure import finished_experiment

    assert cli.main(["plan", "--tokens", tokens, "--experiment", finished_experiment(tmp_path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err == f"error: --tokens must be in [1, 1e+12] target tokens, got {tokens}\n"


def test_plan_answers_from_the_stored_fit(tmp_path, capsys):
    """README: `memlaw plan --tokens N` gives the rank the fit needs, with its interval."""
    from test_structure import finished_experiment

    uri = finished_experiment(tmp_path)
    assert cli.main(["plan", "--tokens", "1000", "--experiment", uri, "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    import math

    from test_records import LAW, LOSS_INIT  # the experiment's records follow this law with 1 % noise

    sft = groups["tiny-s|random|0|paper|sft"]
    needed = LOSS_INIT - math.log(2)  # ΔL that brings the final loss to ln 2
    rank = ((needed - LAW["b"]) / (LAW["C"] * 1000 ** -LAW["beta"])) ** (1 / LAW["alpha"])
    assert sft["status"] == "ok" and sft["capacity"] == pytest.approx(rank, rel=0.1)
    assert sft["capacity_ci"][0] < sft["capacity"] < sft["capacity_ci"][1]
    assert cli.main(["plan", "--tokens", "1000", "--experiment", uri]) == 0
    assert "to memorize 1000 tokens (final loss < ln 2)" in capsys.readouterr().out
