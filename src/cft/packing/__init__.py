"""From corpus to training blocks: tokenization and packing with contextual prompts (tokenize,
packer), the auto-generated prompts of TextAdaptCFT (autogen) and the tuning-set export."""
