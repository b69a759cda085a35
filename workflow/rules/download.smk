# Network stage: the only rules that reach the Hugging Face hub. They are local rules, so on a
# cluster they run where snakemake runs (the login node, which has internet), never on compute
# nodes. Run them alone with `snakemake download_all` (or download_corpora / download_models).


localrules:
    download_corpus,
    download_model,
    download_eval_task,
    download_eval_data,
    download_synthetic_reference,
    download_corpora,
    download_models,
    download_all,


rule download_corpus:
    input:
        guard=foreign_folder_guard(paths.downloaded_corpus_dir("{domain}")),
    output:
        directory(paths.downloaded_corpus_dir("{domain}")),
    log:
        "logs/download_corpus/{domain}.log",
    conda:
        "../envs/data.yaml"
    params:
        digest=digest_of("download_corpus"),
        script=script_digest("download_corpus.py"),
    script:
        "../scripts/download_corpus.py"


rule download_model:
    output:
        paths.model_manifest("{model}"),
    log:
        "logs/download_model/{model}.log",
    conda:
        "../envs/data.yaml"
    params:
        digest=digest_of("download_model"),
        script=script_digest("download_model.py"),
    script:
        "../scripts/download_model.py"


rule download_corpora:
    input:
        [paths.downloaded_corpus_dir(d) for d in downloaded_domains(config)],


rule download_models:
    input:
        [paths.model_manifest(m) for m in hub_models(config)],


rule download_all:
    input:
        rules.download_corpora.input,
        rules.download_models.input,
        [paths.eval_data_manifest(t) for t in hub_eval_tasks()],
        (
            [paths.SYNTHETIC_REFERENCE_DIR]
            if config["synthetic"]["reference"] == "download"
            else []
        ),


rule download_eval_task:
    output:
        paths.eval_data_manifest("{task}"),
    log:
        "logs/download_eval_task/{task}.log",
    conda:
        "../envs/evaluation.yaml"
    params:
        digest=digest_of("download_eval_task"),
        script=script_digest("download_eval_task.py"),
    script:
        "../scripts/download_eval_task.py"


rule download_eval_data:
    input:
        expand(paths.eval_data_manifest("{task}"), task=hub_eval_tasks()),


rule download_synthetic_reference:
    input:
        guard=foreign_folder_guard(paths.SYNTHETIC_REFERENCE_DIR),
    output:
        directory(paths.SYNTHETIC_REFERENCE_DIR),
    log:
        "logs/download_synthetic_reference.log",
    conda:
        "../envs/synthetic.yaml"
    params:
        url=config["synthetic"]["reference_url"],
        digest=digest_of("download_synthetic_reference"),
        script=script_digest("download_synthetic_reference.py"),
    script:
        "../scripts/download_synthetic_reference.py"
