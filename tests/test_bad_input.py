"""Bad input never reaches Ray (issue 7, R5): a corpus of malformed trial and sweep files under
tests/data/bad_inputs/, each rejected by `memlaw validate` with exit code 2 and a message that
names the dotted field and what is allowed.

Every corpus file says what it must produce in its first line,

    # expect: adapter.rank | must be in [1, 65536]

(the dotted field, then a fragment of the message; an empty field for a whole-file error such as
a YAML syntax error). A file that cannot hold a comment (binary bytes, a non-UTF-8 file, an empty
file) has the same line, without `# expect:`, in a sidecar `NAME.expect`. A file's kind is the part
of its name before `__` (unknown-key, inverted-range, ...).

Each file goes through the CLI's own code in this process (`orchestrator.cli.main`), and a sample
of them through `python -m orchestrator.cli validate FILE` as a subprocess. Either way: exit code
2, the expected problem on stderr, no traceback, Ray neither imported nor started, and no tiny
model folder built in the session's MEMLAW_CACHE (tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, memlaw_cmd, print_figure
from orchestrator import cli

CORPUS = Path(__file__).resolve().parent / "data" / "bad_inputs"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix != ".expect")
SIDECAR = ".expect"
#: What the corpus must cover (issue 7, R5): the kinds named there, as file-name prefixes.
REQUIRED_KINDS = {"unknown-key", "wrong-type", "out-of-range", "inverted-range", "empty-grid",
                  "unknown-space", "unknown-method", "unknown-model", "impossible-resources",
                  "storage-scheme", "yaml-syntax", "not-yaml", "empty-file"}
#: Run as a real subprocess too: one cheap file-level error, one sweep, one needing the model's shape.
SUBPROCESS_SAMPLE = ("not-yaml__binary.yaml", "empty-file__zero-bytes.yaml", "unknown-key__sweep-top.yaml",
                     "inverted-range__sweep-lr.yaml", "impossible-resources__trial-rank-over-hidden.yaml")

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
def test_corpus_covers_every_kind_and_says_what_it_expects():
    assert len(FILES) >= 30
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
    ray_imported, ray_running = "ray" in sys.modules, ray_started()  # another test may have used Ray
    before = model_folders()
    code = cli.main(["validate", str(path)])  # a crash raises here, and fails the test with its traceback
    out, err = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT, f"accepted (exit {code}):\n{out}{err}"
    assert not out.startswith("ok:"), out
    assert_expected_problem(err, path)
    assert "Traceback" not in err
    assert ray_imported or "ray" not in sys.modules, "validation imported Ray"
    assert ray_running or not ray_started(), "validation started Ray"
    assert model_folders() == before, "validation built a model folder"
    _seen[kind_of(path)] += 1


# -- a sample through the real command line ------------------------------------------------------
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


@pytest.fixture(scope="module", autouse=True)
def _figure(request):
    """One line at the end: files, kinds, what was checked."""
    yield
    kinds = Counter(kind_of(p) for p in FILES)
    sections = Counter("trial" if "__trial" in p.name else "sweep" if "__sweep" in p.name else "file"
                       for p in FILES)
    in_process = sum(v for k, v in _seen.items() if k != "subprocess")
    line = (f"bad inputs: {len(FILES)} files, {len(kinds)} kinds (trial {sections['trial']}, sweep "
            f"{sections['sweep']}, whole-file {sections['file']}); rejected with exit 2 and the expected "
            f"field: {in_process} in process, {_seen['subprocess']}/{len(SUBPROCESS_SAMPLE)} via the CLI "
            f"subprocess; each with Ray neither imported nor started and no model folder built")
    print_figure(request, line)

