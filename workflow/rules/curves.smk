# Knowledge-acquisition curves (cft.evaluation.knowledge_curve), the named target `knowledge_curves`: each method of
# evaluation.curves.methods is retrained (first seed, same recipe) with checkpoints at evenly
# spaced steps, and every checkpoint is scored on its domain's task with a bootstrap interval.
# Not part of `all`: it costs about as much as the training and evaluation it repeats.


localrules:
    knowledge_curves,


rule knowledge_curve:
    input:
        unpack(curve_input),
    output:
        curve_json("{domain}", "{model}", "{method}", "{seed}"),
    log:
        "logs/knowledge_curve/{domain}/{model}/{method}/seed{seed}.log",
    conda:
        "../envs/evaluation.yaml"
    threads: lambda wildcards: curve_job_resources(wildcards)["cpus_per_task"]
    resources:
        mem_mb=lambda wildcards: curve_job_resources(wildcards)["mem_mb"]
        + config["evaluation"]["mem_mb"],
        runtime=lambda wildcards: curve_job_resources(wildcards)["runtime"]
        + config["evaluation"]["runtime"],
        cpus_per_task=lambda wildcards: curve_job_resources(wildcards)["cpus_per_task"],
        gres=curve_gres,
        tasks_per_gpu=0,
    params:
        digest=digest_of("knowledge_curve"),
        script=script_digest("knowledge_curve.py"),
    script:
        "../scripts/knowledge_curve.py"


rule knowledge_curve_figure:
    input:
        lambda wildcards: curve_files(wildcards.domain, wildcards.model),
    output:
        png=report(
            paths.figure("{domain}", "{model}", "knowledge", "png"),
            caption="../report/knowledge.rst",
            category="Figures",
            subcategory="{domain}",
        ),
        svg=paths.figure("{domain}", "{model}", "knowledge", "svg"),
    log:
        "logs/knowledge_curve_figure/{domain}/{model}.log",
    conda:
        "../envs/tables.yaml"
    params:
        digest=digest_of("knowledge_curve_figure"),
        script=script_digest("knowledge_curve_figure.py"),
    script:
        "../scripts/knowledge_curve_figure.py"


rule knowledge_curves:
    input:
        curve_figures(),
