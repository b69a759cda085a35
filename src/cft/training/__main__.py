"""``python -m cft.training``: the training stage's command line (cft.training.run)."""

from cft.training.run import main

main()
