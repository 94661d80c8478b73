"""README's pod-recipe table, regenerated: every recipe compiled for its TPU slice with `python -m jaxlm.aot`.

    python benchmarks/aot_table.py                       # print the table (each recipe in its own process)
    python benchmarks/aot_table.py --check               # and compare per-chip memory with README's table
    python benchmarks/aot_table.py --write               # put the new table in README.md
    python benchmarks/aot_table.py --root=/tmp/old --recipes=llama_7b   # another checkout (a commit to compare)

It runs the `python -m jaxlm.aot` of the checkout at --root and reads what it prints, so the same script
measures any commit. `--check` exits 1 when a recipe needs more than --tolerance more per-chip memory than
README records. Needs libtpu (`pip install -e ".[tpu]"`); each compile takes one to four minutes here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BEGIN = "<!-- aot-table:begin (python benchmarks/aot_table.py --write) -->"
END = "<!-- aot-table:end -->"
# Each recipe and the slice its docstring says it fits, in README's order.
RECIPES = {
    "gpt2_small": "v5e-8",
    "gpt2_medium": "v5e-16",
    "gpt2_large": "v6e-16",
    "gpt2_xl": "v4-32",
    "llama_1b": "v5p-64",
    "llama_7b": "v5p-128",
    "bert_base": "v5e-8",
    "bert_large": "v5e-8",
}
PARAMS = {
    "gpt2_small": "124M",
    "gpt2_medium": "355M",
    "gpt2_large": "774M",
    "gpt2_xl": "1.56B",
    "llama_1b": "1.10B",
    "llama_7b": "6.74B",
    "bert_base": "110M",
    "bert_large": "335M",
}

flags.DEFINE_string("root", ROOT, "The checkout whose `python -m jaxlm.aot` compiles the recipes.")
flags.DEFINE_list("recipes", list(RECIPES), "Recipes (configs/NAME.py) to compile.")
flags.DEFINE_list("set", [], "Overrides for every recipe, FIELD=VALUE (e.g. model.attention=xla).")
flags.DEFINE_bool("write", False, "Replace README.md's table with the new one.")
flags.DEFINE_bool("check", False, "Exit 1 when a recipe's per-chip memory grew past --tolerance over README's.")
flags.DEFINE_float("tolerance", 0.02, "Allowed growth of per-chip memory for --check (0.02 = 2%).")


@dataclasses.dataclass(frozen=True)
class Row:
    """What `python -m jaxlm.aot` printed for one recipe."""

    recipe: str
    topology: str  # "v5p-128 (64)": the Cloud TPU name and the chips
    mesh: str
    remat: str
    attention: str
    batch: str  # "1024 x 4096 (16)": rows x tokens (micro-batches)
    temporaries_gib: float
    total_gib: float
    hbm_gib: float
    analytic_flops: float
    xla_flops: float
    slice_flops: float
    compile_seconds: float

    def markdown(self) -> str:
        ratio = self.xla_flops / self.slice_flops if self.slice_flops else float("nan")
        share = 100 * self.total_gib / self.hbm_gib
        return (
            f"| `{self.recipe}.py` | {PARAMS.get(self.recipe, '?')} | {self.topology} | {self.mesh} | {self.remat} | "
            f"{self.attention} | {self.batch} | {self.total_gib:.2f} of {self.hbm_gib:.0f} GiB ({share:.0f}%) | "
            f"{self.temporaries_gib:.2f} GiB | {self.analytic_flops:.2e} | {self.xla_flops:.2e} | "
            f"{self.slice_flops:.2e} | {ratio:.2f} | {self.compile_seconds:.0f} s |"
        )


HEADER = (
    "| recipe | params | topology (chips) | mesh | remat | attention | batch x seq (micro-batches) | "
    "per-chip memory of HBM | temporaries | analytic FLOPs/step | XLA FLOPs/chip (slice) | analytic (slice) | "
    "XLA/analytic | compile |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if not found:
        raise ValueError(f"`{pattern}` not in the output:\n{text}")
    return float(found.group(1))


def parse(recipe: str, out: str, seconds: float) -> Row:
    """The figures of one `python -m jaxlm.aot` output."""
    head = re.search(
        r"aot +\| \S+ on (\S+) \(\S+, (\d+) chips, (\d+) GiB HBM each\) \| mesh (.+?) \| remat (\w+) "
        r"\| \w+ \| attention (\w+)",
        out,
    )
    step = re.search(r"step +\| batch (\d+) x (\d+) tokens, (\d+) micro-batch", out)
    if not head or not step:
        raise ValueError(f"{recipe}: not the output of python -m jaxlm.aot:\n{out}")
    mesh = " x ".join(part for part in head.group(4).split(" x ") if not part.endswith("=1")) or "1 device"
    compiled = re.search(r"compiled in ([\d.]+) s", out)
    return Row(
        recipe=recipe,
        topology=f"{head.group(1)} ({head.group(2)})",
        mesh=mesh,
        remat=head.group(5),
        attention=head.group(6),
        batch=f"{step.group(1)} x {step.group(2)} ({step.group(3)})",
        temporaries_gib=_number(r"temporaries ([\d.]+) GiB", out),
        total_gib=_number(r"-> total ([\d.]+) GiB", out),
        hbm_gib=float(head.group(3)),
        analytic_flops=_number(r"analytic ([\d.e+]+) per step", out),
        xla_flops=_number(r"XLA ([\d.e+]+) per chip", out),
        slice_flops=_number(r"analytic for that slice ([\d.e+]+)", out),
        compile_seconds=float(compiled.group(1)) if compiled else seconds,
    )


def compile_recipe(root: str, recipe: str, overrides: list[str] = ()) -> Row:
    """`python -m jaxlm.aot` of `root` on configs/RECIPE.py for its slice (with --config.FIELD=VALUE
    overrides), read back."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": root}
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxlm.aot",
            f"--config=configs/{recipe}.py",
            f"--topology={RECIPES[recipe]}",
            *(f"--config.{override}" for override in overrides),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode not in (0, 1):  # 1: compiled, but does not fit (the table says so)
        raise RuntimeError(f"{recipe}: python -m jaxlm.aot failed:\n{result.stderr[-2000:]}")
    return parse(recipe, result.stdout, time.perf_counter() - start)


def readme_totals(readme: str) -> dict[str, float]:
    """Per-chip GiB of each recipe in README's table."""
    table = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    return {
        name: float(total) for name, total in re.findall(r"^\| `(\w+)\.py` \|.*?\| ([\d.]+) of \d+ GiB", table, re.M)
    }


def main(argv: list[str]) -> int:
    f = flags.FLAGS
    rows = []
    for recipe in f.recipes:
        row = compile_recipe(f.root, recipe, f.set)
        rows.append(row)
        print(row.markdown(), flush=True)
    table = "\n".join([HEADER, *(row.markdown() for row in rows)])
    print("\n" + table)
    if not (f.check or f.write):
        return 0
    with open(README) as file:
        readme = file.read()
    status = 0
    if f.check:
        recorded = readme_totals(readme)
        for row in rows:
            before = recorded.get(row.recipe)
            if before is None:
                print(f"{row.recipe}: not in README's table")
                continue
            growth = row.total_gib / before - 1
            verdict = "GREW" if growth > f.tolerance else "ok"
            print(f"{row.recipe}: {row.total_gib:.2f} GiB a chip, README {before:.2f} ({growth:+.1%}) {verdict}")
            status |= growth > f.tolerance
    if f.write:
        head, rest = readme.split(BEGIN, 1)
        with open(README, "w") as file:
            file.write(f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}")
    return int(status)


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
