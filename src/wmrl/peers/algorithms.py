"""The d3rlpy algorithms a peer method may name, free of d3rlpy: composing the config never imports
it (tests/test_peers.py checks this table against d3rlpy's own dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PeerAlgorithm:
    """A d3rlpy algorithm a peer method may name (`finetune.methods.<name>.peer`)."""

    d3rlpy_class: str  # d3rlpy.algos.<d3rlpy_class>, configured by d3rlpy.algos.<d3rlpy_class>Config
    settings: dict[str, type]  # the config's fields `settings` may override, with their types
    return_conditioned: bool = False  # acts on a target return (evaluated like our Decision Transformers)


# The scalar fields of d3rlpy 2.8.1's configs (the encoder is chosen per observation kind by
# wmrl.peers.d3rlpy).
PEER_ALGORITHMS = {
    "discrete_cql": PeerAlgorithm("DiscreteCQL", {"learning_rate": float, "batch_size": int, "gamma": float,
                                                  "n_critics": int, "target_update_interval": int, "alpha": float}),
    "discrete_bc": PeerAlgorithm("DiscreteBC", {"learning_rate": float, "batch_size": int, "beta": float}),
    # max_timestep is set from the training episodes (the longest + 1), context_size is finetune.window
    "discrete_dt": PeerAlgorithm("DiscreteDecisionTransformer", {
        "learning_rate": float, "batch_size": int, "num_heads": int, "num_layers": int, "attn_dropout": float,
        "resid_dropout": float, "embed_dropout": float, "warmup_tokens": int}, return_conditioned=True),
}
