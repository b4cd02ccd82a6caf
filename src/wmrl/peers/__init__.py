"""Peers: other libraries' algorithms trained on exactly the data our methods see, for the same
budget, and evaluated by our evaluation stage. ``d3rlpy``: DiscreteCQL and
DiscreteBC from d3rlpy 2.8.1. (The online stable-baselines3 DQN and PPO baselines are ``wmrl.train.online``.)"""
