# Network stage: the only rules that reach the Hugging Face hub. They are local rules, so on a
# cluster they run where snakemake runs (the login node, which has internet), never on compute
# nodes. Run them alone with `snakemake download_all` (or download_corpora / download_models).


localrules:
    download_corpus,
    download_model,
    download_corpora,
    download_models,
    download_all,


rule download_corpus:
    output:
        directory("resources/corpora/{domain}"),
    log:
        "logs/download/corpus_{domain}.log",
    conda:
        "../../envs/data.yaml"
    params:
        settings=settings_of("download_corpus"),
    script:
        "../scripts/download_corpus.py"


rule download_model:
    output:
        "resources/models/{model}.json",
    log:
        "logs/download/model_{model}.log",
    conda:
        "../../envs/data.yaml"
    params:
        settings=settings_of("download_model"),
    script:
        "../scripts/download_model.py"


rule download_corpora:
    input:
        expand("resources/corpora/{domain}", domain=downloaded_domains(config)),


rule download_models:
    input:
        expand("resources/models/{model}.json", model=hub_models(config)),


rule download_all:
    input:
        rules.download_corpora.input,
        rules.download_models.input,
        expand("resources/eval_data/{task}.json", task=hub_eval_tasks()),
        (
            ["resources/synthetic_reference"]
            if config["synthetic"]["reference"] == "download"
            else []
        ),
