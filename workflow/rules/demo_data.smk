# The offline demo's generated sources (cft.data.demo_data, cft.data.finben_demo): each demo domain's
# fictional corpus and held-out questions, and the FinBen-format sets.


rule demo_data:
    output:
        documents=paths.demo_file("{domain}", "documents.jsonl"),
        questions=paths.demo_file("{domain}", "questions.jsonl"),
        manifest=paths.demo_file("{domain}", "manifest.json"),
    log:
        "logs/demo_data/{domain}.log",
    priority: MODEL_CHAIN_PRIORITY
    conda:
        "../envs/data.yaml"
    params:
        digest=digest_of("demo_data"),
        script=script_digest("demo_data.py"),
    script:
        "../scripts/demo_data.py"


rule finben_demo:
    input:
        guard=foreign_folder_guard(*map(paths.finben_demo_set, finben_demo.SETS)),
    output:
        [directory(paths.finben_demo_set(name)) for name in finben_demo.SETS],
    log:
        "logs/finben_demo.log",
    conda:
        "../envs/data.yaml"
    params:
        digest=digest_of("finben_demo"),
        script=script_digest("finben_demo.py"),
    script:
        "../scripts/finben_demo.py"
