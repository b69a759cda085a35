# Corpus stage: raw source -> cleaned, de-duplicated, split document table per domain.


rule corpus:
    input:
        corpus_input,
    output:
        table=paths.corpus_table("{domain}"),
        stats=paths.corpus_stats("{domain}"),
    log:
        "logs/corpus/{domain}.log",
    benchmark:
        "benchmarks/corpus/{domain}.tsv"
    priority: MODEL_CHAIN_PRIORITY
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        digest=digest_of("corpus"),
        raw_dir=lambda wildcards: raw_corpus_dir(wildcards.domain),
        script=script_digest("corpus.py"),
    script:
        "../scripts/corpus.py"
