"""Tables and figures with the paper's numbers beside ours: the table stage, its formats and
charts, and the bootstrap intervals."""
