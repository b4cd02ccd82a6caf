"""Models: encoders, causal backbones, HL-Gauss heads and the world-action model."""
