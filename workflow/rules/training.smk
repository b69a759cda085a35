# Fine-tuning per (domain, model, method): CPT, CFT, -CFT and TextAdaptCFT (cft.training).
# `chat` has no train job: its row evaluates the base model. Each trained method runs once per
# seed of training.seeds (default: the top-level seed), in .../{method}/seed{seed}.
#
# Resources come from training.resources (per model); runtime scales with `attempt` on retries,
# memory does not (it is a node's memory: twice or three times that cannot be scheduled).
# On SLURM a GPU job asks for --gres=gpu:K per node with tasks_per_gpu=0 (one task, which
# starts torchrun, instead of one task per GPU); several nodes add nodes=N, tasks=N and the
# `mpi` resource, and the job launches `srun torchrun --rdzv-backend c10d` itself.


rule train:
    input:
        tokenized=paths.tokenized_dir("{domain}", "{model}", "{method}"),
        base_model=paths.base_model_dir("{model}"),
        guard=foreign_folder_guard(
            model_dir("{domain}", "{model}", "{method}", "{seed}")
        ),
    output:
        directory(model_dir("{domain}", "{model}", "{method}", "{seed}")),
    log:
        "logs/train/{domain}/{model}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{domain}/{model}/{method}/seed{seed}.tsv"
    wildcard_constraints:
        method="|".join(trained_methods()) or "^$",
    priority: MODEL_CHAIN_PRIORITY
    conda:
        "../envs/training.yaml"
    threads: lambda wildcards: train_job_resources(wildcards)["cpus_per_task"]
    resources:
        mem_mb=lambda wildcards: train_job_resources(wildcards)["mem_mb"],
        runtime=lambda wildcards, attempt: train_job_resources(wildcards)["runtime"]
        * attempt,
        nodes=lambda wildcards: train_job_resources(wildcards)["nodes"],
        tasks=lambda wildcards: train_job_resources(wildcards)["nodes"],
        cpus_per_task=lambda wildcards: train_job_resources(wildcards)["cpus_per_task"],
        gres=train_gres,
        tasks_per_gpu=0,
        mpi=lambda wildcards: (
            "srun" if train_job_resources(wildcards)["nodes"] > 1 else ""
        ),
    params:
        digest=digest_of("train"),
        checkpoint_dir=paths.checkpoint_dir("{domain}", "{model}", "{method}", "{seed}"),
        script=script_digest("train.py"),
    script:
        "../scripts/train.py"
