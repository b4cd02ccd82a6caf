"""Our world-action models as MLflow pyfunc models: the form a fine-tuned or pretrained model is
registered in (`wmrl.tracking.register_model`; the in-context models: wmrl.train.icrl.icrl_pyfunc)."""

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

