# Tokenization and packing into fixed-length blocks, per (domain, model, method).


rule tokenize:
    input:
        unpack(tokenize_input),
        guard=foreign_folder_guard(
            paths.tokenized_dir("{domain}", "{model}", "{method}")
        ),
    output:
        directory(paths.tokenized_dir("{domain}", "{model}", "{method}")),
    log:
        "logs/tokenize/{domain}/{model}/{method}.log",
    benchmark:
        "benchmarks/tokenize/{domain}/{model}/{method}.tsv"
    priority: MODEL_CHAIN_PRIORITY
    conda:
        "../envs/packing.yaml"
    threads: config["packing"]["cpus_per_task"]
    resources:
        mem_mb=lambda wildcards, attempt: config["packing"]["mem_mb"] * attempt,
        cpus_per_task=config["packing"]["cpus_per_task"],
        runtime=120,
    params:
        digest=digest_of("tokenize"),
        script=script_digest("tokenize.py"),
    script:
        "../scripts/tokenize.py"
