# Contextual prompts: TextAdaptCFT prompts generated per document (the strategy and negative
# prompt sets are config files, read directly by the tokenize rule).


rule autogen:
    input:
        corpus=paths.corpus_table("{domain}"),
        generator=lambda wildcards: paths.base_model_dir(autogen_model(config)),
    output:
        table=paths.autogen_table("{domain}"),
        stats=paths.autogen_stats("{domain}"),
    log:
        "logs/autogen/{domain}.log",
    benchmark:
        "benchmarks/autogen/{domain}.tsv"
    priority: MODEL_CHAIN_PRIORITY
    conda:
        stage_env("autogen", "../envs/packing.yaml")
    threads: config["autogen"]["cpus_per_task"]
    resources:
        mem_mb=config["autogen"]["mem_mb"],
        runtime=lambda wildcards, attempt: config["autogen"]["runtime"] * attempt,
        cpus_per_task=config["autogen"]["cpus_per_task"],
        gres=autogen_gres(),
        tasks_per_gpu=0,
    params:
        digest=digest_of("autogen"),
        script=script_digest("autogen.py"),
    script:
        "../scripts/autogen.py"
