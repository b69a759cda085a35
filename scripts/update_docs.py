"""Regenerate the parts of docs/ that are derived from the code, so that they cannot drift:
the `--help` of every stage CLI in its docs/stages page, and the config reference in
docs/config.md from config/schema.yaml. `--check` reports what is stale and changes nothing
(tests/test_docs.py runs it).

    .venv/bin/python scripts/update_docs.py [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# A generated block: <!-- generated: KIND ARG --> ... <!-- end generated -->
BLOCK = re.compile(r"(<!-- generated: (\S+) (\S+) -->\n)(.*?)(<!-- end generated -->)", re.S)
HELP_WIDTH = "100"  # argparse wraps at $COLUMNS


def cli_help(module: str) -> str:
    env = {**os.environ, "COLUMNS": HELP_WIDTH, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    return f"```text\n$ python -m {module} --help\n{result.stdout.rstrip()}\n```\n"


def _resolve(node: dict, schema: dict) -> dict:
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type_of(node: dict) -> str:
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " / ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind:
        return kind
    if "oneOf" in node or "anyOf" in node:
        return "one of several forms"
    return ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(prefix: str, node: dict, schema: dict, rows: list[str]) -> None:
    node = _resolve(node, schema)
    default = node.get("default")
    shown_default = (
        f"`{json.dumps(default)}`" if default is not None and not isinstance(default, dict) else ""
    )
    rows.append(
        f"| `{prefix}` | {_type_of(node)} | {shown_default} | "
        f"{_one_line(node.get('description', ''))} |"
    )
    for name, child in node.get("properties", {}).items():
        _rows(f"{prefix}.{name}", child, schema, rows)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):  # a mapping by name: models.<name>, domains.<name>, ...
        _rows(f"{prefix}.<name>", extra, schema, rows)


def config_reference(_: str) -> str:
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, node in schema["properties"].items():
        _rows(name, node, schema, rows)
    return "\n".join(rows) + "\n"


GENERATORS = {"cli": cli_help, "config": config_reference}


def render(text: str) -> str:
    def fill(match: re.Match) -> str:
        kind, arg = match.group(2), match.group(3)
        return match.group(1) + GENERATORS[kind](arg) + match.group(5)

    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report stale pages, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for page in sorted((REPO / "docs").rglob("*.md")):
        text = page.read_text()
        if not BLOCK.search(text):
            continue
        fresh = render(text)
        if fresh != text:
            stale.append(str(page.relative_to(REPO)))
            if not args.check:
                page.write_text(fresh)
    if stale:
        verb = "stale" if args.check else "updated"
        print(f"{verb}: {', '.join(stale)}")
        if args.check:
            print("run: .venv/bin/python scripts/update_docs.py")
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
