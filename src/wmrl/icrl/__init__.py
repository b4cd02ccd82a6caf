"""In-context RL with the Decision-Pretrained Transformer (DPT; Lee et al. 2023, "Supervised
Pretraining Can Learn In-Context Reinforcement Learning").

`tasks`: the two task families (multi-armed bandits, Dark Room) and their oracles;
`baselines`: the bandit algorithms and the Dark Room episode runner DPT is compared with;
`histories`: the in-context pretraining datasets (Parquet + card.json).

Importing this package registers ``wmrl/Bandit-v0`` and ``wmrl/DarkRoom-v0`` with Gymnasium, so
``gym.make("wmrl.icrl:wmrl/DarkRoom-v0", goal=(3, 4))`` works.
"""

from gymnasium.envs.registration import register

register(id="wmrl/Bandit-v0", entry_point="wmrl.icrl.tasks:BanditEnv")
register(id="wmrl/DarkRoom-v0", entry_point="wmrl.icrl.tasks:DarkRoomEnv")
