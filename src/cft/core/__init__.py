"""The pipeline's core, shared by every stage: config loading and validation, what each stage's
result depends on (settings), paths, the experiment grid and the method registry, atomic writes,
fingerprints, provenance, devices, command-line and logging plumbing, errors."""
