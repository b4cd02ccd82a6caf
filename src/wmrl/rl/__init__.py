"""RL objectives: the joint world-model/TD/CQL loss (JOWA), behaviour cloning, planning."""
