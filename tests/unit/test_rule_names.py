"""One name per stage: a job rule, its key in cft.core.settings.STAGES, its entry script,
its log and benchmark folders carry the same name, and its conda env is named for the package
its code lives in (workflow/envs/<package>.yaml; envs/vllm.yaml where a backend switches).

Read from the rule files as written (snakefmt layout), so a renamed rule that keeps an old log
folder, script or stage key fails here."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from cft.core.settings import STAGES

RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def rule_blocks() -> dict[str, str]:
    blocks = {}
    for smk in RULE_FILES:
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name, _, body = block.partition(":")
            blocks[name.strip()] = body
    return blocks


RULES = rule_blocks()
# Rules that run code (a script); the others only gather targets.
JOB_RULES = {name: body for name, body in RULES.items() if re.search(r"^\s+script:", body, re.M)}


def directive(body: str, name: str) -> str:
    """The text of a directive, up to the next directive at the same indentation, less comments."""
    match = re.search(rf"^    {name}:\n(.*?)(?=^    \w+:|\Z)", body, re.M | re.S)
    lines = match[1].splitlines() if match else []
    return "\n".join(line for line in lines if not line.strip().startswith("#"))


def test_every_job_rule_is_a_stage_and_every_stage_a_rule():
    assert len(JOB_RULES) >= 15
    assert set(JOB_RULES) == set(STAGES)


@pytest.mark.parametrize("rule", sorted(JOB_RULES))
def test_a_rule_carries_its_own_name_everywhere(rule):
    body = JOB_RULES[rule]
    params = directive(body, "params")
    assert f'digest=digest_of("{rule}")' in params, f"rule {rule}: stage digest"
    assert f'script=script_digest("{rule}.py")' in params, f"rule {rule}: script digest"
    assert directive(body, "script").strip() == f'"../scripts/{rule}.py"', f"rule {rule}: script"
    assert (REPO / "workflow" / "scripts" / f"{rule}.py").is_file()
    for folder in ("log", "benchmark"):
        paths = re.findall(r'"([^"]+)"', directive(body, folder))
        assert folder == "benchmark" or paths, f"rule {rule} writes no log"
        for path in paths:
            top = f"{folder}s" if folder == "log" else "benchmarks"
            assert path.startswith((f"{top}/{rule}/", f"{top}/{rule}.")), (rule, path)


@pytest.mark.parametrize("rule", sorted(JOB_RULES))
def test_a_rule_runs_in_the_env_of_its_package(rule):
    package = STAGES[rule].code[0].split(".")[1]
    conda = directive(JOB_RULES[rule], "conda").strip()
    expected = f'"../envs/{package}.yaml"'
    # stage_env("<config section>", env): the section's backend may switch it to vLLM's env
    assert re.fullmatch(rf'(stage_env\("\w+", )?{re.escape(expected)}\)?', conda), (rule, conda)
    assert (REPO / "workflow" / "envs" / f"{package}.yaml").is_file()
