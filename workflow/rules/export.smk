# The CFT set as hosted-tuning JSONL, in Gemini's supervised-tuning format (cft.packing.export). Not
# the paper's Gemini experiment, which tuned on generated content for MedQA test questions
# (docs/fidelity.md, "Gemini").


rule export:
    input:
        paths.corpus_table("{domain}"),
    output:
        jsonl=paths.export_file("{domain}"),
        stats=str(paths.export_stats(paths.export_file("{domain}"))),
    log:
        "logs/export/{domain}.log",
    conda:
        "../envs/packing.yaml"
    params:
        digest=digest_of("export"),
        script=script_digest("export.py"),
    script:
        "../scripts/export.py"
