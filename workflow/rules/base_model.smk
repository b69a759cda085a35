# Base models: one transformers folder (safetensors, tokenizer, chat template) per model.


rule base_model:
    input:
        base_model_input,
        guard=foreign_folder_guard(paths.base_model_dir("{model}")),
    output:
        directory(paths.base_model_dir("{model}")),
    log:
        "logs/base_model/{model}.log",
    benchmark:
        "benchmarks/base_model/{model}.tsv"
    priority: MODEL_CHAIN_PRIORITY
    conda:
        "../envs/data.yaml"
    # one: a two-core job waits behind a stream of one-core jobs until both cores are free
    threads: 1
    resources:
        mem_mb=base_model_mem_mb,
        runtime=60,
    params:
        digest=digest_of("base_model"),
        script=script_digest("base_model.py"),
    script:
        "../scripts/base_model.py"
