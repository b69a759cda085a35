# Export of the CFT set as Gemini tuning JSONL (cft.export).


rule export_gemini:
    input:
        paths.corpus_table("{domain}"),
    output:
        jsonl=paths.export_file("{domain}"),
        stats=str(paths.export_stats(paths.export_file("{domain}"))),
    log:
        "logs/export/{domain}_gemini.log",
    conda:
        "../../envs/tokenize.yaml"
    params:
        settings=settings_of("export"),
        script=script_digest("export.py"),
    script:
        "../scripts/export.py"
