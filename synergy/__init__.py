"""synergy: SFT x RL synergy study for vision-language models."""
