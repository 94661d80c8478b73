"""The README's `## Configs` table, made from jaxlm/config.py's trailing comments so it cannot drift.

python tools/config_table.py           # print the table
python tools/config_table.py --write   # put it in README.md between the config-table markers
python tools/config_table.py --check   # exit 1 when README.md's table is not what this makes
"""

from __future__ import annotations

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "jaxlm", "config.py")
README = os.path.join(ROOT, "README.md")
BEGIN = "<!-- config-table:begin (python tools/config_table.py --write) -->"
END = "<!-- config-table:end -->"
# `c.data.seq_len = 128  # Tokens per row; ...`: a field, its default as written, its meaning.
FIELD = re.compile(r"^\s*c\.([\w.]+) = (.+?)  # (.+)$")


def fields(source: str) -> list[tuple[str, str, str]]:
    """(dotted name, default as written, meaning) of every commented field assignment, in file order."""
    found = []
    for line in source.splitlines():
        match = FIELD.match(line)
        if match:
            found.append(match.groups())
    return found


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    return set().union(
        *(
            _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
            for key, value in tree.items()
        )
    )


def _check_complete(found: list[tuple[str, str, str]]) -> None:
    """Every leaf of base_config() must have a commented line: a field without a meaning is an error."""
    sys.path.insert(0, ROOT)
    from jaxlm.config import base_config  # ml_collections only: no jax to import

    missing = sorted(_leaves(base_config().to_dict()) - {name for name, _, _ in found})
    if missing:
        raise SystemExit(f"error: jaxlm/config.py fields without a trailing `# meaning` comment: {', '.join(missing)}")


def table(source: str) -> str:
    """The markdown table: field, default, meaning."""
    found = fields(source)
    _check_complete(found)
    rows = ["| field | default | meaning |", "| --- | --- | --- |"]
    for name, default, meaning in found:
        rows.append(f"| `{name}` | `{default}` | {meaning.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def with_table(readme: str, generated: str) -> str:
    """README text with the part between the markers replaced by the table."""
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"error: README.md lacks the markers {BEGIN} ... {END}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{generated}\n{END}{tail}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite README.md's table")
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md's table is stale")
    args = parser.parse_args(argv)
    with open(CONFIG) as f:
        generated = table(f.read())
    if not (args.write or args.check):
        print(generated)
        return 0
    with open(README) as f:
        readme = f.read()
    updated = with_table(readme, generated)
    if args.check:
        if updated != readme:
            print("README.md's config table is stale: run python tools/config_table.py --write", file=sys.stderr)
            return 1
        print("README.md's config table matches jaxlm/config.py")
        return 0
    with open(README, "w") as f:
        f.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
