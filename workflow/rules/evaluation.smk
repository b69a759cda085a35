# Evaluation with lm-evaluation-harness: one job per evaluated model (domain, model, run), where
# a run is `chat` (the base model) or `{method}/seed{seed}` (one training run), scoring every
# task of the domain's suite in one process (cft.evaluation.evaluate): the weights are read and
# the model opened once (one vLLM engine), and each task gets its own record.
# Hub datasets are fetched by the local rule download_eval_task (login node); evaluation jobs
# then read them from HF_HOME offline.


rule evaluate:
    input:
        unpack(evaluate_input),
    output:
        # the run's records and per-sample logs, one pair per task, updated in place: a job
        # rerun because one task's settings or data changed rescores that task alone (a record
        # still current is kept), and a job that fails leaves the folder as it was (Snakemake
        # backs update() outputs up and restores them)
        records=update(directory(paths.run_eval_dir("{domain}", "{model}", "{run}"))),
    log:
        "logs/evaluate/{domain}/{model}/{run}.log",
    benchmark:
        "benchmarks/evaluate/{domain}/{model}/{run}.tsv"
    priority: MODEL_CHAIN_PRIORITY
    conda:
        stage_env("evaluation", "../envs/evaluation.yaml")
    threads: config["evaluation"]["cpus_per_task"]
    resources:
        mem_mb=lambda wildcards, attempt: config["evaluation"]["mem_mb"] * attempt,
        cpus_per_task=config["evaluation"]["cpus_per_task"],
        # evaluation.runtime is per task
        runtime=lambda wildcards, attempt: config["evaluation"]["runtime"]
        * len(grid.suite(config, wildcards.domain))
        * attempt,
        gres=evaluate_gres(),
        tasks_per_gpu=0,
    params:
        # a digest per task of the suite (cft.core.settings.job_digest)
        digest=digest_of("evaluate"),
        script=script_digest("evaluate.py"),
    script:
        "../scripts/evaluate.py"
