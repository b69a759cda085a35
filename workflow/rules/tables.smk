# Tables (cft.tables.table) and figures (cft.tables.figures) that reproduce the paper's tables, the
# `tables` target, and one named target per experiment: exp_{domain}_{model}_{method}, with every character of the
# model name other than letters and digits turned into '_' (e.g. exp_biomed_llama_2_7b_chat_negcft).
# `snakemake tables` rebuilds the tables from the eval JSONs when they are up to date; a table
# code change (src/cft/tables/table.py is an input) reruns only the table jobs, and a forced rerun of
# a train job reruns its evaluations and its tables.


report: "../report/workflow.rst"


localrules:
    tables,
    paper_cells,


rule table:
    input:
        # the eval folders of exactly the records the table is built from (cft.core.grid),
        # each record with its per-sample log
        evals=lambda wildcards: table_folders(config, wildcards.domain, wildcards.model),
    output:
        # one folder, published as a unit (cft.tables.table)
        md=table_file("{domain}", "{model}", "md"),
        csv=report(
            table_file("{domain}", "{model}", "csv"),
            caption="../report/table.rst",
            category="Tables",
            subcategory="{domain}",
        ),
        tex=table_file("{domain}", "{model}", "tex"),
        json=table_file("{domain}", "{model}", "json"),
        png=report(
            table_file("{domain}", "{model}", "png"),
            caption="../report/bars.rst",
            category="Figures",
            subcategory="{domain}",
        ),
        svg=table_file("{domain}", "{model}", "svg"),
    log:
        "logs/table/{domain}/{model}.log",
    conda:
        "../envs/tables.yaml"
    params:
        digest=digest_of("table"),
        script=script_digest("table.py"),
    script:
        "../scripts/table.py"


rule loss_figure:
    input:
        # the first seed's run of each trained method
        models=lambda wildcards: [
            model_dir(wildcards.domain, wildcards.model, method, SEEDS[0])
            for method in trained_methods()
        ],
    output:
        png=report(
            paths.figure("{domain}", "{model}", "loss", "png"),
            caption="../report/loss.rst",
            category="Figures",
            subcategory="{domain}",
        ),
        svg=paths.figure("{domain}", "{model}", "loss", "svg"),
    log:
        "logs/loss_figure/{domain}/{model}.log",
    conda:
        "../envs/tables.yaml"
    params:
        digest=digest_of("loss_figure"),
        script=script_digest("loss_figure.py"),
    script:
        "../scripts/loss_figure.py"


rule tables:
    input:
        table_outputs(),


# Exactly the cells the paper reports a number for (data/paper_tables.csv): for a small budget.
# The grid's other rows (TextAdaptCFT outside 7B biomedical, -CFT for 13B finance, AdaptLLM
# finance) are extensions, marked in the tables.
rule paper_cells:
    input:
        [
            path
            for row in reported_rows(config, load_reference())
            for path in row_eval_outputs(*row)
        ],


for exp_domain, exp_model, exp_method in grid.eval_rows(config):

    rule:
        name:
            experiment_name(exp_domain, exp_model, exp_method)
        input:
            row_eval_outputs(exp_domain, exp_model, exp_method),
        localrule: True
