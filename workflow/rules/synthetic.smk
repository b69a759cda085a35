# The synthetic in-context regression experiment (cft.synthetic): pretraining per seed,
# fine-tuning per (task, condition, seed), a summary over seeds with the authors' curves.
# Unfinished runs keep their checkpoint in a .work folder next to the output and resume.


rule synthetic_pretrain:
    input:
        guard=foreign_folder_guard(paths.synthetic_pretrain_dir("{scale}", "{seed}")),
    output:
        directory(paths.synthetic_pretrain_dir("{scale}", "{seed}")),
    log:
        "logs/synthetic/{scale}/pretrain_seed{seed}.log",
    benchmark:
        "benchmarks/synthetic/{scale}/pretrain_seed{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    priority: SYNTHETIC_PRETRAIN_PRIORITY
    conda:
        "../../envs/synthetic.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
        gres=synthetic_gres(),
        tasks_per_gpu=0,
    params:
        settings=settings_of("synthetic"),
        work_dir=paths.work_dir(paths.synthetic_pretrain_dir("{scale}", "{seed}")),
        script=script_digest("synthetic.py"),
    script:
        "../scripts/synthetic.py"


rule synthetic_finetune:
    input:
        pretrained=paths.synthetic_pretrain_dir("{scale}", "{seed}"),
        guard=foreign_folder_guard(
            paths.synthetic_run_dir("{scale}", "{task}", "{condition}", "{seed}")
        ),
    output:
        directory(paths.synthetic_run_dir("{scale}", "{task}", "{condition}", "{seed}")),
    log:
        "logs/synthetic/{scale}/{task}_{condition}_seed{seed}.log",
    benchmark:
        "benchmarks/synthetic/{scale}/{task}_{condition}_seed{seed}.tsv"
    wildcard_constraints:
        task="|".join(SYNTHETIC_TASKS),
        condition="|".join(SYNTHETIC_CONDITIONS),
        seed=r"\d+",
    conda:
        "../../envs/synthetic.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
        gres=synthetic_gres(),
        tasks_per_gpu=0,
    params:
        settings=settings_of("synthetic"),
        work_dir=paths.work_dir(
            paths.synthetic_run_dir("{scale}", "{task}", "{condition}", "{seed}")
        ),
        script=script_digest("synthetic.py"),
    script:
        "../scripts/synthetic.py"


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
        "logs/synthetic/{scale}/summary.log",
    conda:
        "../../envs/synthetic.yaml"
    params:
        settings=settings_of("synthetic"),
        script=script_digest("synthetic.py"),
    script:
        "../scripts/synthetic.py"
