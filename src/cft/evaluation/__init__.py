"""lm-evaluation-harness runs: the evaluate stage (evaluate: one model's records on the tasks of
its suite, one per task), the model opened once for a job and one harness call per task
(harness), the weight checks before a model scores (weights), the project's task folders
(task_folders, lm_eval_tasks/) and lm-eval's task index (task_index), the shared-context hf
backend (shared_context), and the knowledge curves (curves)."""

from cft.core.errors import CftError


class EvaluationError(CftError, RuntimeError):
    """The evaluation cannot run; the message names the task or dataset and the fix."""
