# Evaluation with lm-evaluation-harness: one job per (domain, model, run, task) (cft.evaluation.evaluate),
# where a run is `chat` (the base model) or `{method}/seed{seed}` (one training run).
# Hub datasets are fetched by the local rule download_eval_task (login node); evaluation jobs
# then read them from HF_HOME offline.


rule evaluate:
    input:
        unpack(evaluate_input),
    output:
        json=paths.run_eval_json("{domain}", "{model}", "{run}", "{task}"),
        # lm-eval's per-sample log: the tables' intervals and paired differences come from it.
        samples=str(
            paths.samples_path(
                paths.run_eval_json("{domain}", "{model}", "{run}", "{task}")
            )
        ),
    log:
        "logs/evaluate/{domain}/{model}/{run}/{task}.log",
    benchmark:
        "benchmarks/evaluate/{domain}/{model}/{run}/{task}.tsv"
    priority: MODEL_CHAIN_PRIORITY
    conda:
        stage_env("evaluation", "../envs/evaluation.yaml")
    threads: config["evaluation"]["cpus_per_task"]
    resources:
        mem_mb=lambda wildcards, attempt: config["evaluation"]["mem_mb"] * attempt,
        cpus_per_task=config["evaluation"]["cpus_per_task"],
        runtime=lambda wildcards, attempt: config["evaluation"]["runtime"] * attempt,
        gres=evaluate_gres(),
        tasks_per_gpu=0,
    params:
        digest=digest_of("evaluate"),
        script=script_digest("evaluate.py"),
    script:
        "../scripts/evaluate.py"
