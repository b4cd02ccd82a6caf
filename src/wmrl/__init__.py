"""wmrl: world-model RL lab bench."""
