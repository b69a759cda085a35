# Evaluation with lm-evaluation-harness: one job per (domain, model, run, task) (cft.evaluation),
# where a run is `chat` (the base model) or `{method}/seed{seed}` (one training run).
# Hub datasets are fetched by the local rule download_eval_task (login node); evaluation jobs
# then read them from HF_HOME offline.


localrules:
    download_eval_task,
    download_eval_data,


rule demo_finben:
    output:
        directory(paths.FINBEN_DEMO_DIR),
    log:
        "logs/demo_data/finben.log",
    conda:
        "../../envs/data.yaml"
    params:
        settings=settings_of("finben_demo"),
    script:
        "../scripts/demo_finben.py"


rule download_eval_task:
    output:
        paths.eval_data_manifest("{task}"),
    log:
        "logs/download/eval_{task}.log",
    conda:
        "../../envs/eval.yaml"
    script:
        "../scripts/download_eval_task.py"


rule download_eval_data:
    input:
        expand(paths.eval_data_manifest("{task}"), task=hub_eval_tasks()),


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
        "logs/eval/{domain}/{model}/{run}/{task}.log",
    benchmark:
        "benchmarks/eval/{domain}/{model}/{run}/{task}.tsv"
    conda:
        "../../envs/eval.yaml"
    threads: config["evaluation"]["cpus_per_task"]
    resources:
        mem_mb=lambda wildcards, attempt: config["evaluation"]["mem_mb"] * attempt,
        cpus_per_task=config["evaluation"]["cpus_per_task"],
        runtime=lambda wildcards, attempt: config["evaluation"]["runtime"] * attempt,
        gres=evaluate_gres(),
        tasks_per_gpu=0,
    params:
        settings=settings_of("evaluate"),
    script:
        "../scripts/evaluate.py"
