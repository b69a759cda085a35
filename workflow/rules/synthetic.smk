# The synthetic in-context regression experiment (cft.synthetic): pretraining per seed,
# fine-tuning per (task, condition, seed), a summary over seeds with the authors' curves.
# Unfinished runs keep their checkpoint in a .work folder next to the output and resume.


rule synthetic_pretrain:
    input:
        guard=foreign_folder_guard(paths.synthetic_pretrain_dir("{scale}", "{seed}")),
    output:
        directory(paths.synthetic_pretrain_dir("{scale}", "{seed}")),
    log:
        "logs/synthetic_pretrain/{scale}/seed{seed}.log",
    benchmark:
        "benchmarks/synthetic_pretrain/{scale}/seed{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    priority: SYNTHETIC_PRETRAIN_PRIORITY
    conda:
        "../envs/synthetic.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
        gres=synthetic_gres(),
        tasks_per_gpu=0,
    params:
        digest=digest_of("synthetic_pretrain"),
        work_dir=paths.work_dir(paths.synthetic_pretrain_dir("{scale}", "{seed}")),
        script=script_digest("synthetic_pretrain.py"),
    script:
        "../scripts/synthetic_pretrain.py"


rule synthetic_finetune:
    input:
        pretrained=paths.synthetic_pretrain_dir("{scale}", "{seed}"),
        guard=foreign_folder_guard(
            paths.synthetic_run_dir("{scale}", "{task}", "{condition}", "{seed}")
        ),
    output:
        directory(paths.synthetic_run_dir("{scale}", "{task}", "{condition}", "{seed}")),
    log:
        "logs/synthetic_finetune/{scale}/{task}_{condition}_seed{seed}.log",
    benchmark:
        "benchmarks/synthetic_finetune/{scale}/{task}_{condition}_seed{seed}.tsv"
    wildcard_constraints:
        task="|".join(SYNTHETIC_TASKS),
        condition="|".join(SYNTHETIC_CONDITIONS),
        seed=r"\d+",
    conda:
        "../envs/synthetic.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
        gres=synthetic_gres(),
        tasks_per_gpu=0,
    params:
        digest=digest_of("synthetic_finetune"),
        work_dir=paths.work_dir(
            paths.synthetic_run_dir("{scale}", "{task}", "{condition}", "{seed}")
        ),
        script=script_digest("synthetic_finetune.py"),
    script:
        "../scripts/synthetic_finetune.py"


rule synthetic_summary:
    input:
        runs=synthetic_runs,
        reference=synthetic_reference_input(),
    output:
        json=paths.synthetic_summary("{scale}", "json"),
        md=paths.synthetic_summary("{scale}", "md"),
        figures=report(
            expand(
                paths.synthetic_figure("{{scale}}", "{task}"),
                task=config["synthetic"]["tasks"],
            ),
            caption="../report/synthetic.rst",
            category="Synthetic experiment",
        ),
        vector_figures=expand(
            paths.synthetic_figure("{{scale}}", "{task}", "svg"),
            task=config["synthetic"]["tasks"],
        ),
    log:
        "logs/synthetic_summary/{scale}.log",
    conda:
        "../envs/synthetic.yaml"
    params:
        digest=digest_of("synthetic_summary"),
        script=script_digest("synthetic_summary.py"),
    script:
        "../scripts/synthetic_summary.py"
