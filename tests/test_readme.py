"""The README stays true: its config table is the generated one, the fields it names exist, and every ```bash
block in it is run by a test or by CI, or says why it cannot be and which test runs what it runs.

Each ```bash block has one marker on the line before it:
- `<!-- runnable -->`: a test here runs the block as written, in a temporary directory beside links to the
  checkout (and `../shared` beside that directory, as beside the checkout); a path under /tmp/ moves into that
  directory.
- `<!-- runnable: FLAGS -->`: the same, with FLAGS added to every `python run_pretrain.py` and
  `python -m jaxlm.aot` command of the block, to shrink a long recipe to seconds.
- `<!-- runnable after "SECTION", ... -->` (with `: FLAGS` or not): first the runnable blocks of those README
  sections run in the same directory (or their outputs are copied from where they ran), for the runs the block
  reads.
- `<!-- run by TARGET, ... -->`: a test (`tests/FILE.py::test_name`) or `.ci/run` runs the block's commands.
- `<!-- not runnable here (REASON); covered by TARGET, ... -->`: the block needs what this machine lacks (a pod, a
  cluster, a download); the named tests run the same jaxlm commands and flags.

The runnable blocks run in the tests' own environment; `test_a_new_reader_installs_and_runs_readme_in_order`
instead installs as README says, in a fresh venv in a copy of the tracked files: the first command's
`pip install -e .`, then the export section's `[hf]` extra, each before the commands that need it.
"""

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from jaxlm.config import base_config, flatten
from jaxlm.train.progress import parse_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "README.md")) as _f:
    README = _f.read()
# What a command block may use from the checkout; it runs in a temporary directory beside links to them.
LINKED = ("run_pretrain.py", "configs", "jaxlm", "tools", "README.md", "pyproject.toml")
EXPORTED_FILES = {"model.safetensors", "model.safetensors.index.json"}  # named like model.* fields, but files
SHARED = os.path.join(os.path.dirname(ROOT), "shared")  # ../shared from the checkout: the README's data files

LIST = r"\S+(?:, \S+)*"  # targets: tests/FILE.py::test_name or .ci/run
MARKERS = {
    "runnable": re.compile(
        r'<!-- runnable(?: after (?P<after>"[^"]+"(?:, "[^"]+")*))?'
        r"(?:: (?P<flags>--\S+(?: --\S+)*))? -->"
    ),
    "run by": re.compile(rf"<!-- run by (?P<targets>{LIST}) -->"),
    "not runnable": re.compile(rf"<!-- not runnable here \((?P<reason>[^)]+)\); covered by (?P<targets>{LIST}) -->"),
}
TARGET = re.compile(r"(tests/[\w/]+\.py)::(\w+)$")
SHRUNK = re.compile(r"^(python (?:run_pretrain\.py|-m jaxlm\.aot)\b.*?)(\s+#.*)?$")  # a trailing comment stays last
INSTALL = re.compile(r"python3 -m venv |\. \.venv/bin/activate$|pip install ")
# What a command prints when it did its job, by what its command line says.
PRINTS = [
    (re.compile(pattern), text)
    for pattern, text in [
        (r"^python run_pretrain\.py", "\ndone  | "),
        (r"--config\.train\.stop_at=(\d+)", r"resume | step \1 "),  # the next run on the workdir resumes there
        (r"--config\.checkpoint\.restore_from=", "start | weights from"),
        (r"^python -m jaxlm\.aot", "\nfit   | fits"),
        (r"^python -m jaxlm\.plot (\S+)", r"\1"),
        (r"^python -m jaxlm\.export --workdir", "exported "),
        (r"^python -m jaxlm\.export --from_hf", "imported "),
        (r"^python -m jaxlm\.generate", "\n--- step "),
        (r"^python -m jaxlm\.generate .*<mask>", "<mask> at "),
        (r"^python tools/config_table\.py --check", "config table matches"),
    ]
]


def _blocks() -> list[dict]:
    """Every ```bash block: its text, the line before it, its marker's kind and fields, and its section."""
    blocks = []
    for match in re.finditer(r"^```bash\n(.*?)^```$", README, re.M | re.S):
        before = README[: match.start()]
        line = before.rstrip("\n").rsplit("\n", 1)[-1]
        kind, fields = None, {}
        for name, pattern in MARKERS.items():
            if found := pattern.fullmatch(line):
                kind, fields = name, {k: v for k, v in found.groupdict().items() if v}
        sections = re.findall(r"^## (.+)$", before, re.M)
        blocks.append(
            {
                "text": match.group(1),
                "line": line,
                "kind": kind,
                "section": sections[-1] if sections else "",
                "number": len(blocks) + 1,
                **fields,
            }
        )
    return blocks


BLOCKS = _blocks()
RUNNABLE = [b for b in BLOCKS if b["kind"] == "runnable"]


def _commands(block: str) -> list[str]:
    """The block's command lines, continuation lines joined."""
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _targets(block: dict) -> list[str]:
    return block.get("targets", "").split(", ") if block.get("targets") else []


def _config_table_tool():
    spec = importlib.util.spec_from_file_location("config_table", os.path.join(ROOT, "tools", "config_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_config_table_is_what_the_generator_makes():
    tool = _config_table_tool()
    with open(tool.CONFIG) as f:
        generated = tool.table(f.read())
    assert tool.with_table(README, generated) == README, "run python tools/config_table.py --write"
    assert generated.count("\n| `") == len(flatten(base_config()))  # one row per field


def test_every_config_field_the_readme_names_exists():
    fields = set(flatten(base_config()))
    groups = {field.split(".")[0] for field in fields}
    named = set(re.findall(r"--config\.([a-z_.]+)=", README))  # FIELD in --config.FIELD=VALUE is a placeholder
    named |= {name for name in re.findall(r"`([a-z_]+\.[\w.]+)(?:=[^`]*)?`", README) if name.split(".")[0] in groups}
    assert len(named) > 20, "the patterns found too little"
    assert sorted(named - fields - EXPORTED_FILES) == []


def test_every_bash_block_is_marked():
    unmarked = [
        f"block {b['number']} ({b['section']}): {b['text'].splitlines()[0][:60]}" for b in BLOCKS if b["kind"] is None
    ]
    assert unmarked == [], (
        "mark each ```bash block: <!-- runnable[: FLAGS] -->, <!-- run by TEST -->, or "
        "<!-- not runnable here (REASON); covered by TEST --> (see tests/test_readme.py)"
    )
    # No marker stands anywhere but right before a block (a stray or doubled one is a mistake).
    assert len(re.findall(r"<!-- (?:runnable|run by|not runnable)", README)) == len(BLOCKS)
    assert len(BLOCKS) >= 10, "the block pattern found too little"


def test_the_tests_and_sections_markers_name_exist():
    sections = {b["section"] for b in RUNNABLE}
    for block in BLOCKS:
        for name in re.findall(r'"([^"]+)"', block.get("after", "")):
            assert name in sections, f"block {block['number']}: no section {name!r} with runnable blocks"
        if block["kind"] in ("run by", "not runnable"):
            assert _targets(block), block["line"]
        for target in _targets(block):
            if target == ".ci/run":  # CI runs the same command, quietly
                with open(os.path.join(ROOT, ".ci", "run")) as f:
                    ci = f.read().replace("pip install -q ", "pip install ")
                assert all(command in ci.splitlines() for command in _commands(block["text"])), target
                continue
            found = TARGET.fullmatch(target)
            assert found, f"block {block['number']}: {target!r} is not tests/FILE.py::test_name or .ci/run"
            path = os.path.join(ROOT, found.group(1))
            assert os.path.isfile(path), f"block {block['number']}: no file {found.group(1)}"
            with open(path) as f:
                tests = {node.name for node in ast.parse(f.read()).body if isinstance(node, ast.FunctionDef)}
            assert found.group(2) in tests, f"block {block['number']}: {found.group(1)} has no {found.group(2)}"


def test_there_are_runnable_blocks():
    assert len(RUNNABLE) >= 2


def _env(optimized: bool = False) -> dict:
    """One device, as on a laptop; XLA's code unoptimised (the tests' flags) unless `optimized`."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = "" if optimized else os.environ.get("JAXLM_TEST_XLA_FLAGS", "")
    return env


def _checkout(tmp_path) -> str:
    """A directory with links to what the commands use from the checkout, and ../shared beside it."""
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    for name in LINKED:
        os.symlink(os.path.join(ROOT, name), cwd / name)
    if os.path.isdir(SHARED):
        os.symlink(SHARED, tmp_path / "shared")
    return str(cwd)


def _script(block: dict, cwd: str) -> str:
    lines = []
    for line in _commands(block["text"]):
        if flags := block.get("flags"):
            line = SHRUNK.sub(lambda m: f"{m.group(1)} {flags}{m.group(2) or ''}", line)
        lines.append(re.sub(r"(?<=[=\s])/tmp/", f"{cwd}/tmp/", line))
    return "\n".join(lines) + "\n"


def _skip_unless_runnable_here(block: dict):
    for path in re.findall(r"\.\./shared/\S+", block["text"]):
        if not os.path.exists(os.path.join(ROOT, path)):
            pytest.skip(f"{path} (relative to the checkout) is absent")
    if "jaxlm.aot" in block["text"] and importlib.util.find_spec("libtpu") is None:
        pytest.skip("python -m jaxlm.aot needs libtpu (pip install -e '.[tpu]')")


_RAN: dict[int, str] = {}  # block number -> the directory it ran in, for blocks run after it


def _run(block: dict, cwd: str, *, optimized: bool = False) -> subprocess.CompletedProcess:
    """Run the block in cwd, after the blocks it needs (copying their outputs where they already ran)."""
    _skip_unless_runnable_here(block)
    needed = re.findall(r'"([^"]+)"', block.get("after", ""))
    for earlier in [b for b in RUNNABLE if b["section"] in needed and b["number"] < block["number"]]:
        if earlier["number"] in _RAN:
            source = _RAN[earlier["number"]]
            shutil.copytree(
                source,
                cwd,
                symlinks=True,
                dirs_exist_ok=True,
                ignore=lambda path, names, source=source: LINKED if path == source else (),
            )
        else:
            _check(earlier, _run(earlier, cwd))
    script = _script(block, cwd)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=_env(optimized),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    result.args = script
    return result


def _check(block: dict, result: subprocess.CompletedProcess):
    assert result.returncode == 0, f"{result.args}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    expected = Counter(
        found.expand(text)
        for command in _commands(result.args)
        for pattern, text in PRINTS
        if (found := pattern.search(command))
    )
    for text, count in expected.items():
        assert result.stdout.count(text) >= count, f"{result.args}\nprints {text!r} too few times:\n{result.stdout}"


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=[b["text"].splitlines()[0][:40] for b in RUNNABLE])
def test_runnable_block(block, tmp_path):
    cwd = _checkout(tmp_path)
    _check(block, _run(block, cwd))
    _RAN[block["number"]] = cwd


@pytest.mark.slow
def test_the_first_command_trains_the_default_model(tmp_path):
    """README's first block, after its install (what CI does): the 2-minute default run, with no overrides."""
    first = BLOCKS[0]
    assert "tests/test_readme.py::test_the_first_command_trains_the_default_model" in _targets(first)
    [command] = _commands(first["text"])
    rest = [part for part in command.split(" && ") if not INSTALL.match(part)]
    assert rest == ["python run_pretrain.py"], rest
    # 450 steps: running them dominates, so XLA optimises as it does for a user.
    result = _run({**first, "text": "\n".join(rest)}, _checkout(tmp_path), optimized=True)
    _check(first, result)
    losses = [float(parse_line(line)["loss"]) for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(losses) >= 2 and losses[-1] < losses[0] - 1, result.stdout
    assert "\neval    450/450 | val_loss " in result.stdout
    assert "\nsample |\n" in result.stdout, result.stdout


# A new reader's first run, shortened: the default model, a few steps (the 450-step run is the test above).
READER_TRAIN_FLAGS = (
    "--config.train.steps=30 --config.train.warmup_steps=5 --config.log.every=10 --config.eval.max_batches=2 "
    "--config.sample.num_tokens=8"
)


def _section(title: str) -> str:
    """README's text under `## title`, up to the next section."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert found, f"README has no section {title!r}"
    return found.group(1)


def _tracked_copy(destination: str) -> None:
    """The checkout's tracked files (`git ls-files`, as a clone holds them) copied to `destination`: no .venv,
    no build outputs, no untracked files a reader would not have."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.decode().strip()}")
    for name in listed.stdout.decode().split("\0"):
        if name and os.path.isfile(os.path.join(ROOT, name)):  # a tracked file deleted in the work tree is gone
            os.makedirs(os.path.join(destination, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), os.path.join(destination, name))


def _reader_shell(script: str, cwd: str) -> subprocess.CompletedProcess:
    """`script` in bash as a reader's terminal runs it: no XLA flags of the tests, `python3` the interpreter the
    tests run on (so the venv README creates has a Python jaxlm supports)."""
    env = _env(optimized=True)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200
    )
    result.args = script
    return result


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_a_new_reader_installs_and_runs_readme_in_order(tmp_path):
    """README top to bottom in a fresh copy of the tracked files, with only what README installs: the first
    command (venv, `pip install -e .`, the default run, shortened), then the export as the export section
    shows it: first as a reader runs it right after the first command (one line naming the extra, nothing
    written), then after the `[hf]` install that section names; the export loads in `transformers`."""
    checkout = str(tmp_path / "jaxlm")
    _tracked_copy(checkout)
    assert not os.path.exists(os.path.join(checkout, ".venv"))

    [first] = _commands(BLOCKS[0]["text"])
    assert "tests/test_readme.py::test_a_new_reader_installs_and_runs_readme_in_order" in _targets(BLOCKS[0])
    parts = first.split(" && ")
    assert parts[-1] == "python run_pretrain.py" and all(INSTALL.match(part) for part in parts[:-1]), first
    stdout = _ok(_reader_shell(f"{first} {READER_TRAIN_FLAGS}", checkout))
    losses = [float(parse_line(line)["loss"]) for line in stdout.splitlines() if line.startswith("step ")]
    assert len(losses) == 3 and losses[-1] < losses[0], stdout
    assert "\ndone  | 30 steps in " in stdout and "\nsample |\n" in stdout, stdout
    where = _ok(_reader_shell('. .venv/bin/activate && python -c "import jaxlm; print(jaxlm.__file__)"', checkout))
    assert where.strip() == os.path.join(checkout, "jaxlm", "__init__.py")  # the copy's code, not the tests'

    section = _section("Export to Hugging Face and generate")
    [block] = [b for b in BLOCKS if b["section"] == "Export to Hugging Face and generate"]
    export = next(c for c in _commands(block["text"]) if c.startswith("python -m jaxlm.export --workdir="))
    export = re.sub(r"\s+#.*$", "", export)
    assert "--workdir=runs/default " in export, export  # the run the first command made
    out = os.path.join(checkout, re.search(r"--out=(\S+)", export)[1])
    [hf_install] = re.findall(r"`(pip install [^`]*\[hf\][^`]*)`", section)

    missing = _reader_shell(f". .venv/bin/activate && {export}", checkout)
    assert missing.returncode == 2, f"{missing.stdout}\n{missing.stderr}"
    assert hf_install in missing.stderr and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert not os.path.exists(out), os.listdir(out)  # a failed export leaves no half-written folder

    stdout = _ok(_reader_shell(f". .venv/bin/activate && {hf_install} && {export}", checkout))
    assert "exported " in stdout, stdout
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tokenizer("The default value", return_tensors="pt")).logits
    assert logits.shape[-1] == model.config.vocab_size and torch.isfinite(logits).all()
