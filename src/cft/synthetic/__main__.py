"""``python -m cft.synthetic``: one pretraining or fine-tuning run outside Snakemake."""

from __future__ import annotations

import argparse
from pathlib import Path

import cft.synthetic
from cft.core import paths
from cft.core.cli import program_name
from cft.core.logging_utils import setup_logging
from cft.core.methods import CFT
from cft.synthetic import CONDITIONS, TASKS
from cft.synthetic.stages import run_finetune, run_pretrain


def main(argv: list[str] | None = None) -> None:
    from cft.core.cli import stage_config

    parser = argparse.ArgumentParser(
        prog=program_name(), description=cft.synthetic.__doc__.split("\n\n")[0]
    )
    parser.add_argument("stage", choices=["pretrain", "finetune"])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--scale", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", choices=TASKS, default="polynomial")
    parser.add_argument("--condition", choices=CONDITIONS, default=CFT.name)
    parser.add_argument("--pretrained", help="a pretrain output folder (finetune)")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    setup_logging()
    config = stage_config(args)
    out = Path(args.out_dir)
    work = Path(paths.work_dir(str(out)))
    if args.stage == "pretrain":
        run_pretrain(config, args.scale, args.seed, out, work)
    else:
        run_finetune(
            config,
            args.scale,
            args.task,
            args.condition,
            args.seed,
            pretrained=Path(args.pretrained),
            out_dir=out,
            work_dir=work,
        )


if __name__ == "__main__":
    main()
