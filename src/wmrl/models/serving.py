"""Our models as MLflow pyfunc models: the form a fine-tuned, pretrained or in-context model is
registered in (`wmrl.tracking.register_model`)."""

from __future__ import annotations

from wmrl.models.checkpoint import load_model


def world_action_pyfunc():
    """The registered form of a fine-tuned or pretrained model: MLflow's pyfunc `predict` takes a
    dict of arrays {"obs": (B, K+1, *obs_shape), "actions": (B, K), "task": (B,)} (a Decision
    Transformer also "return_to_go": (B, K)) and returns, at the last observation, the Q-values
    (B, actions), or a Decision Transformer's action logits (B, K, actions) at every observation.
    Defined on call so importing this module does not load MLflow."""
    import mlflow.pyfunc

    class WorldActionPyfunc(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            self.model, checkpoint = load_model(context.artifacts["checkpoint"])
            self.decision = checkpoint.get("decision") is not None

        def predict(self, context, model_input, params=None):
            import torch

            with torch.no_grad():
                x = {k: torch.as_tensor(v) for k, v in model_input.items()}
                obs, actions, task = x["obs"].float(), x["actions"].long(), x["task"].long()
                if self.decision:
                    return self.model(obs, actions, x["return_to_go"].float(), task)["policy"].numpy()
                q = self.model(obs, actions, task)["q"][:, -1]
                return self.model.decode_scalar(q).numpy()

    return WorldActionPyfunc()


def icrl_pyfunc():
    """The registered form of an in-context model (DPT, AD; wmrl.train.icrl.save_model's file):
    `predict` takes a dict of its forward's arrays by name (`IcrlMethod.inputs`: DPT's query_state
    (B,) and states, actions, rewards, next_states (B, T); AD's states, prev_actions, prev_rewards
    (B, T)) and returns its action logits, (B, T + 1, actions) or (B, T, actions)."""
    import mlflow.pyfunc

    class IcrlPyfunc(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            from wmrl.train.icrl import load_model as load_icrl

            self.method, self.model, _ = load_icrl(context.artifacts["checkpoint"])

        def predict(self, context, model_input, params=None):
            import torch

            with torch.no_grad():
                return self.model(*(torch.as_tensor(model_input[name]) for name in self.method.inputs)).numpy()

    return IcrlPyfunc()


def any_length_signature(example: dict):
    """An MLflow signature for the named arrays of `example` in which every dimension is free (-1):
    an in-context model reads contexts of any length up to its own."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(value.dtype), (-1,) * value.ndim, name)
                                         for name, value in example.items()]))
