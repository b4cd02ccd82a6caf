"""In-context RL: the Decision-Pretrained Transformer (DPT; Lee et al. 2023, "Supervised
Pretraining Can Learn In-Context Reinforcement Learning") and Algorithm Distillation (AD; Laskin
et al. 2022), pretrained on many tasks' histories and evaluated on held-out tasks.

`tasks`: the two task families (multi-armed bandits, Dark Room) and their oracles;
`baselines`: the bandit algorithms and the Dark Room episode runner the models are compared with;
`histories`: the in-context datasets (Parquet + card.json), `learning`: AD's learning histories,
`arrays`: both as arrays, `generate`: the pipeline's dataset job; `methods`: the method registry
(DPT, AD); `curve`: the in-context learning curve; `evaluate`, `report` and `context_report`:
evaluation on held-out tasks and the report with its instrument checks.

Importing this package registers ``wmrl/Bandit-v0`` and ``wmrl/DarkRoom-v0`` with Gymnasium, so
``gym.make("wmrl.icrl:wmrl/DarkRoom-v0", goal=(3, 4))`` works.
"""

from gymnasium.envs.registration import register

register(id="wmrl/Bandit-v0", entry_point="wmrl.icrl.tasks:BanditEnv")
register(id="wmrl/DarkRoom-v0", entry_point="wmrl.icrl.tasks:DarkRoomEnv")
