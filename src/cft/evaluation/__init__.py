"""lm-evaluation-harness runs: the evaluate stage, the shared-context hf backend, the task index
and the project's task folders (lm_eval_tasks), and the knowledge curves."""
