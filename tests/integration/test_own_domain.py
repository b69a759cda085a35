"""The worked example of a domain of one's own (config/examples/own_domain.yaml), end to end
through the real snakemake CLI with the local profile: two domains from a text-file folder and
a JSONL export, the user's quiz folder and the held-out text, trained with the packaged
SmolLM2; then an edit of one quiz YAML reruns exactly the evaluations of that quiz's domain and
its table, and those jobs rescore the quiz alone: the held-out text's records are kept."""

from __future__ import annotations

import json
import shutil

import yaml
from conftest import REPO, job_counts, snakemake

EXAMPLE = "config/examples/own_domain.yaml"
DOMAINS = {"contracts": "contracts_quiz", "lab_safety": "lab_safety_quiz"}


def test_the_own_domain_example_runs_end_to_end_and_replans_an_edited_task(tmp_path):
    # The user's project: the repository's config folder (the example's data and task folder
    # in it) in the working directory, where the task YAMLs' data paths point; the task folder
    # named by its path there, so that the edit below is the working copy's, not the repo's.
    shutil.copytree(REPO / "config", tmp_path / "config")
    tasks = tmp_path / "config" / "examples" / "own_domain" / "tasks"
    overlay = tmp_path / "tasks_here.yaml"
    overlay.write_text(yaml.safe_dump({"evaluation": {"task_paths": [str(tasks)]}}))
    configs = [str(tmp_path / "config" / "config.yaml"), str(tmp_path / EXAMPLE), str(overlay)]
    args = ["tables", "--profile", str(REPO / "profiles" / "local"), "--cores", "2"]
    args += ["--directory", str(tmp_path), "--configfile", *configs]

    result = snakemake(*args, timeout=1200)
    assert result.returncode == 0, result.stderr[-5000:]
    example = yaml.safe_load((REPO / EXAMPLE).read_text())
    methods = example["grid"]["methods"]
    trained = len(methods) - 1
    counts = job_counts(result.stderr)
    assert counts["corpus"] == 2 and counts["train"] == 2 * trained
    # one job per evaluated model, scoring its domain's quiz and held-out text
    assert counts["evaluate"] == 2 * len(methods)

    stats = {
        d: json.loads((tmp_path / "results" / "corpus" / d / "stats.json").read_text())
        for d in DOMAINS
    }
    # 7 files of one document and one of three; 12 JSONL lines
    assert stats["contracts"]["documents_in"] == 10 == stats["contracts"]["documents_out"]
    assert stats["lab_safety"]["documents_in"] == 12 == stats["lab_safety"]["documents_out"]
    for domain, quiz in DOMAINS.items():
        assert stats[domain]["splits"]["validation"] >= 2  # held-out documents to score
        table_dir = tmp_path / "results" / "tables" / domain / "smollm2-135m-instruct"
        table = json.loads((table_dir / "table.json").read_text())
        assert table["tasks"] == [quiz, "heldout_text"] and not table["missing"]
        for row in table["rows"]:
            assert 0 <= table["ours"][f"{row}|{quiz}"] <= 100
            bits = table["ours"][f"{row}|heldout_text"]
            interval = table["intervals"][f"{row}|heldout_text"]
            assert 0 < bits < 10 and interval["low"] <= bits <= interval["high"]
        markdown = (table_dir / "table.md").read_text()
        assert "acc_norm" in markdown and "bits per byte of the domain's held-out" in markdown
        assert (table_dir / "bars.png").stat().st_size > 0

    again = snakemake(*args, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    evals = tmp_path / "results" / "eval"
    before = {path: path.read_bytes() for path in evals.rglob("*.json*")}
    assert len(before) == 2 * len(methods) * 2 * 2  # a record and a log per task, model, domain
    quiz_yaml = tasks / "contracts_quiz.yaml"
    quiz_yaml.write_text(quiz_yaml.read_text() + 'description: "Veldorian contract law.\\n\\n"\n')
    replan = snakemake(*args, "-n")
    assert replan.returncode == 0, replan.stderr[-3000:]
    assert job_counts(replan.stdout) == {
        "evaluate": len(methods),  # the contracts quiz of every row, and nothing else
        "table": 1,
        "tables": 1,
        "total": len(methods) + 2,
    }
    rerun = snakemake(*args, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    after = {path: path.read_bytes() for path in evals.rglob("*.json*")}
    assert after.keys() == before.keys()
    changed = {path.relative_to(evals) for path in before if after[path] != before[path]}
    # the quiz rescored (its prompts changed) in every contracts row, each record with its log;
    # the held-out text's records and the other domain's left as they were
    quiz_files = {
        path.relative_to(evals)
        for path in before
        if path.relative_to(evals).parts[0] == "contracts"
        and path.name.startswith("contracts_quiz.")
    }
    assert len(quiz_files) == 2 * len(methods)
    assert changed == quiz_files
    logs = "".join(
        p.read_text() for p in (tmp_path / "logs" / "evaluate" / "contracts").rglob("*.log")
    )
    assert logs.count("heldout_text.json: current") == len(methods)
    final = snakemake(*args, "-n")
    assert "Nothing to be done" in final.stdout + final.stderr, final.stdout[-3000:]

    # A job that fails after rescoring a task leaves its folder as it was: both tasks stale
    # (a new limit), the held-out text scored first, then the quiz's data fail to parse.
    chat = evals / "contracts" / "smollm2-135m-instruct" / "chat"
    kept = {path: path.read_bytes() for path in chat.iterdir()}
    overlay.write_text(yaml.safe_dump({"evaluation": {
        "task_paths": [str(tasks)], "limit": 5,
        "suites": {"contracts": ["heldout_text", "contracts_quiz"]},
    }}))  # fmt: skip
    quiz_data = tasks / "contracts_quiz.jsonl"
    quiz_data.write_text(quiz_data.read_text() + "{not json\n")
    failed = snakemake(str(chat.relative_to(tmp_path)), *args[1:])
    assert failed.returncode != 0
    job_log = tmp_path / "logs" / "evaluate" / "contracts" / "smollm2-135m-instruct" / "chat.log"
    assert "chat heldout_text: {" in job_log.read_text()  # rescored, then undone
    assert "Restored previous version" in failed.stderr
    assert {path: path.read_bytes() for path in chat.iterdir()} == kept
