# Tokenization and packing into fixed-length blocks, per (domain, model, method).


rule tokenize:
    input:
        unpack(tokenize_input),
    output:
        directory("results/tokenized/{domain}/{model}/{method}"),
    log:
        "logs/tokenize/{domain}/{model}/{method}.log",
    benchmark:
        "benchmarks/tokenize/{domain}/{model}/{method}.tsv"
    conda:
        "../../envs/tokenize.yaml"
    threads: config["packing"]["cpus_per_task"]
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        cpus_per_task=config["packing"]["cpus_per_task"],
        runtime=120,
    params:
        settings=settings_of("tokenize"),
    script:
        "../scripts/tokenize.py"


rule export_gemini:
    input:
        "results/corpus/{domain}/documents.parquet",
    output:
        "results/export/{domain}/gemini_cft.jsonl",
    log:
        "logs/export/{domain}_gemini.log",
    conda:
        "../../envs/tokenize.yaml"
    params:
        settings=settings_of("export"),
    script:
        "../scripts/export_gemini.py"
