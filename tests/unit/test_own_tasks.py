"""A user's own lm-eval tasks (`evaluation.task_paths`): found beside the project's, their
reported metric read from their YAML, their files in the digests of exactly their own jobs."""

from __future__ import annotations

import pytest

from cft.core.config import ConfigError, validate_config
from cft.core.settings import stage_digest
from cft.evaluation.task_folders import (
    TASKS_DIR,
    TaskFileError,
    is_local,
    local_data,
    reported_metric,
    task_dirs,
    task_files,
    task_fingerprint,
)

QUIZ = """task: {name}
output_type: multiple_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: {first}
  - metric: acc
"""


@pytest.fixture
def user_tasks(tmp_path):
    """A user's folder of two tasks, one with a hook file beside it, and their data."""
    data = tmp_path / "data" / "quiz.jsonl"
    data.parent.mkdir()
    data.write_text('{"question": "q", "choices": ["a", "b"], "answer": 0}\n')
    root = tmp_path / "my_tasks"
    (root / "quiz").mkdir(parents=True)
    (root / "quiz" / "contracts.yaml").write_text(
        QUIZ.format(name="contracts_quiz", data=data, first="acc_norm")
    )
    (root / "quiz" / "utils.py").write_text("def process(doc):\n    return doc\n")
    (root / "torts").mkdir()
    (root / "torts" / "torts.yaml").write_text(
        QUIZ.format(name="torts_quiz", data=data, first="acc")
        + "metadata:\n  reported_metric: acc\n"
    )
    return root


def user_config(demo_config, user_tasks) -> dict:
    demo_config["evaluation"]["task_paths"] = [str(user_tasks)]
    demo_config["evaluation"]["suites"] = {
        "biomed": ["contracts_quiz", "torts_quiz"], "finance": ["demo_knowledge_finance_cloze"],
    }  # fmt: skip
    return validate_config(demo_config)


def test_user_tasks_are_found_beside_the_projects(demo_config, user_tasks):
    config = user_config(demo_config, user_tasks)
    dirs = task_dirs(config)
    assert dirs == (TASKS_DIR, user_tasks)
    found = task_files(dirs)
    assert found["contracts_quiz"] == user_tasks / "quiz" / "contracts.yaml"
    assert "demo_knowledge_biomed_cloze" in found  # the project's stay
    assert "contracts_quiz" not in task_files()  # the project's folder alone


def test_the_reported_metric_is_the_yamls(demo_config, user_tasks):
    dirs = task_dirs(user_config(demo_config, user_tasks))
    assert reported_metric("contracts_quiz", dirs) == "acc_norm"  # the first of metric_list
    assert reported_metric("torts_quiz", dirs) == "acc"  # metadata.reported_metric


def test_a_users_data_files_are_its_jobs_inputs(demo_config, user_tasks, tmp_path):
    dirs = task_dirs(user_config(demo_config, user_tasks))
    assert local_data("contracts_quiz", dirs) == [str(tmp_path / "data" / "quiz.jsonl")]
    assert is_local("contracts_quiz", dirs)  # no hub download planned for it


def test_a_task_name_defined_twice_is_refused(demo_config, user_tasks):
    (user_tasks / "torts" / "copy.yaml").write_text(
        (user_tasks / "torts" / "torts.yaml").read_text().replace("torts_quiz", "contracts_quiz")
    )
    task_files.cache_clear()
    with pytest.raises(TaskFileError, match=r"'contracts_quiz' is also defined by .*contracts"):
        task_files((TASKS_DIR, user_tasks))


def test_editing_a_task_reruns_its_own_jobs_only(demo_config, user_tasks):
    """The evaluate digest of each task and the table's: editing contracts.yaml changes its
    evaluations' and the biomed table's, not the other task's nor the project's tasks'."""
    config = user_config(demo_config, user_tasks)

    def digests():
        task_files.cache_clear()
        evaluations = {
            name: stage_digest(config, "evaluate", model="m", task=task)
            for name, task in (("contracts", "contracts_quiz"), ("torts", "torts_quiz"),
                               ("finance", "demo_knowledge_finance_cloze"))
        }  # fmt: skip
        tables = {
            f"{d} table": stage_digest(config, "table", domain=d) for d in config["grid"]["domains"]
        }
        return evaluations | tables

    before = digests()
    assert task_fingerprint("demo_knowledge_finance_cloze", task_dirs(config)) is None
    yaml = user_tasks / "quiz" / "contracts.yaml"
    yaml.write_text(yaml.read_text().replace('"{{question}}"', '"Q: {{question}}"'))
    after = digests()
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"contracts", "biomed table"}
    (user_tasks / "quiz" / "utils.py").write_text("def process(doc):\n    return dict(doc)\n")
    assert digests()["contracts"] != after["contracts"]  # its hooks count too


def test_a_task_path_that_is_not_a_folder_is_refused(demo_config, tmp_path):
    demo_config["evaluation"]["task_paths"] = [str(tmp_path / "nowhere")]
    with pytest.raises(ConfigError, match=r"'evaluation\.task_paths\.0'.*no such file"):
        validate_config(demo_config)
    (tmp_path / "file.yaml").write_text("task: x\n")
    demo_config["evaluation"]["task_paths"] = [str(tmp_path / "file.yaml")]
    with pytest.raises(ConfigError, match=r"'evaluation\.task_paths\.0'.*not a folder"):
        validate_config(demo_config)


def test_a_held_out_text_with_nothing_held_out_is_refused(demo_config):
    from cft.evaluation.task_folders import check_corpus_tasks

    demo_config["evaluation"]["suites"]["biomed"] = ["demo_knowledge_biomed_cloze", "heldout_text"]
    config = validate_config(demo_config)
    check_corpus_tasks(config, task_dirs(config))  # a tenth of the documents held out
    config["corpus"]["validation_fraction"] = 0
    with pytest.raises(TaskFileError, match=r"evaluation.suites.biomed lists 'heldout_text'.*0"):
        check_corpus_tasks(config, task_dirs(config))
    config["corpus"]["validation_fraction"] = 0.1
    config["evaluation"]["curves"]["tasks"]["finance"] = "heldout_text"
    with pytest.raises(TaskFileError, match=r"evaluation.curves.tasks.finance = 'heldout_text'"):
        check_corpus_tasks(config, task_dirs(config))
