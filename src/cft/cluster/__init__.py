"""The workflow on a SLURM cluster beyond what the executor plugin does by itself.

- :mod:`~cft.cluster.recover`: after the Snakemake controller died (login node lost, SSH
  dropped, killed for memory), the workflow's SLURM jobs it left behind are listed, cancelled
  (a train job checkpoints first) or waited for, what they completed is recorded in Snakemake's
  metadata, and the working directory is unlocked for the restart (docs/cluster.md, "A
  crashed controller")."""

from cft.core.errors import CftError


class ClusterError(CftError, RuntimeError):
    """SLURM or Snakemake did not do what recovering the workflow needs; the message says
    which command and what to do."""
