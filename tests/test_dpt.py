"""The Decision-Pretrained Transformer (wmrl.models.dpt) and its training (wmrl.train.icrl), on tiny
synthetic bandit histories in the data contract's shape."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from wmrl.icrl.arrays import ContextArrays
from wmrl.icrl.histories import Histories, read_histories, write_histories
from wmrl.icrl.methods import ICRL_METHODS
from wmrl.models.dpt import DecisionPretrainedTransformer, DPTConfig, deploy_online, dpt_loss
from wmrl.train.icrl import HistoryData, IcrlModule, load_model, save_model, to_tensors, train_icrl

DPT = ICRL_METHODS["dpt"]

SCHEMA = {"task": pl.Int64, "states": pl.List(pl.Int16), "actions": pl.List(pl.Int16),
          "rewards": pl.List(pl.Float32), "next_states": pl.List(pl.Int16), "query_state": pl.Int16,
          "optimal_action": pl.Int16}
BACKBONES = ["transformer", "ssm", "gru"]
K, H = 3, 20


def bandit_frame(n: int, arms: int, horizon: int, seed: int, noise: float = 0.3) -> tuple[pl.DataFrame, np.ndarray]:
    """`n` Gaussian bandits (arm means uniform in [0, 1], reward noise `noise`), each with one
    history of `horizon` uniformly random pulls, labelled with its best arm; and the means."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(0, 1, (n, arms))
    actions = rng.integers(0, arms, (n, horizon))
    rewards = (np.take_along_axis(means, actions, 1) + noise * rng.standard_normal((n, horizon))).astype(np.float32)
    zeros = np.zeros((n, horizon), np.int16)
    frame = pl.DataFrame({"task": np.arange(n), "states": list(zeros), "actions": list(actions.astype(np.int16)),
                          "rewards": list(rewards), "next_states": list(zeros), "query_state": np.zeros(n, np.int16),
                          "optimal_action": means.argmax(1).astype(np.int16)}, schema=SCHEMA)
    return frame, means


def card(arms: int = K, horizon: int = H, states: int = 1) -> dict:
    return {"states": states, "actions": arms, "horizon": horizon, "family": "bandit", "kind": "contexts"}


def shape(arms: int = K, horizon: int = H) -> dict:
    return {"states": 1, "actions": arms, "horizon": horizon, "grid": 0}


def write_bandits(frame: pl.DataFrame, means: np.ndarray, out) -> dict:
    """`frame` written through the contract's one writer (card with sha256); returns the card."""
    return write_histories(Histories("bandit", 1, K, H, means.tolist(), {}, 0, frame), out)


def random_context(batch: int, length: int, states: int, actions: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, states, (batch,), generator=g), torch.randint(0, states, (batch, length), generator=g),
            torch.randint(0, actions, (batch, length), generator=g), torch.rand(batch, length, generator=g),
            torch.randint(0, states, (batch, length), generator=g))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_shapes_at_every_context_length(backbone):
    torch.manual_seed(0)
    model = DecisionPretrainedTransformer(5, 4, 8, DPTConfig(backbone=backbone, layers=2))
    q, s, a, r, s2 = random_context(3, 8, 5, 4)
    for length in (0, 1, 8):
        logits = model(q, s[:, :length], a[:, :length], r[:, :length], s2[:, :length])
        assert logits.shape == (3, length + 1, 4)
        assert torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="horizon"):
        model(q, *(torch.cat([x, x[:, :1]], 1) for x in (s, a, r, s2)))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_causal_and_stepping_matches_forward(backbone):
    """Logits at position j ignore transitions after j; start/observe give forward's logits."""
    torch.manual_seed(0)
    model = DecisionPretrainedTransformer(5, 4, 8, DPTConfig(backbone=backbone, layers=2)).eval()
    q, s, a, r, s2 = random_context(3, 8, 5, 4)
    full = model(q, s, a, r, s2)
    j = 3  # positions 0..3 have seen transitions 1..3 (indices 0..2)
    _, s_b, a_b, r_b, s2_b = random_context(3, 8, 5, 4, seed=1)
    changed = model(q, *(torch.cat([x[:, :j], y[:, j:]], 1) for x, y in ((s, s_b), (a, a_b), (r, r_b), (s2, s2_b))))
    torch.testing.assert_close(changed[:, :j + 1], full[:, :j + 1])
    assert not torch.allclose(changed[:, j + 1:], full[:, j + 1:])
    other_query = model((q + 1) % 5, s, a, r, s2)  # the query is seen at every position
    assert not torch.allclose(other_query[:, 0], full[:, 0])

    logits, state = model.start(q)
    stepped = [logits]
    for t in range(8):
        logits, state = model.observe(state, s[:, t], a[:, t], r[:, t], s2[:, t])
        stepped.append(logits)
    torch.testing.assert_close(torch.stack(stepped, 1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="full"):
        model.observe(state, s[:, 0], a[:, 0], r[:, 0], s2[:, 0])


def test_loss_is_the_mean_cross_entropy_over_positions():
    logits = torch.randn(2, 4, 3)
    target = torch.tensor([0, 2])
    expected = np.mean([-torch.log_softmax(logits[b, j], -1)[target[b]].item() for b in range(2) for j in range(4)])
    assert dpt_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_reads_the_contract(tmp_path):
    frame, means = bandit_frame(10, K, H, 0)
    written = write_bandits(frame, means, tmp_path / "bandits")
    frame_read, read_card = read_histories(tmp_path / "bandits")
    histories = DPT.arrays(frame_read, read_card)
    assert read_card == written and len(histories) == 10
    assert histories.actions.shape == (10, H) and histories.rewards.dtype == np.float32
    np.testing.assert_array_equal(histories.actions[3], frame["actions"][3].to_numpy())
    train, heldout = histories.split(0.2)
    assert (len(train), len(heldout)) == (8, 2) and set(heldout.task) == {8, 9}
    with pytest.raises(ValueError, match="steps"):
        ContextArrays.from_frame(frame, card(horizon=H + 1))
    with pytest.raises(ValueError, match="actions"):
        ContextArrays.from_frame(frame, card(arms=2))


@pytest.fixture(scope="module")
def trained():
    """A DPT (transformer, DPT's size) trained on 2,000 K=3 bandits for 300 steps (a few seconds)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train = ContextArrays.from_frame(bandit_frame(2000, K, H, 0)[0], card())
    module = IcrlModule("dpt", shape(), {"learning_rate": 1e-3})
    optimizer = module.configure_optimizers()
    rng, losses = np.random.default_rng(0), []
    for _ in range(300):
        batch = to_tensors(train.sample(64, rng))
        loss = DPT.metrics(module.model, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return module.model.eval(), losses


def test_learns_a_bandit_family_in_context(trained):
    """On new bandits, the argmax at the last position (20 pulls seen) finds the best arm far more
    often than at position 0 (nothing seen: chance, 1/3)."""
    model, losses = trained
    assert np.mean(losses[-50:]) < np.mean(losses[:50]) - 0.3
    test = ContextArrays.from_frame(bandit_frame(500, K, H, 1)[0], card())
    batch = to_tensors(test.rows(np.arange(len(test))))
    with torch.no_grad():
        accuracy = (model(batch["query_state"], batch["states"], batch["actions"], batch["rewards"],
                          batch["next_states"]).argmax(-1) == batch["optimal_action"][:, None]).float().mean(0)
    assert accuracy[0] < 0.45
    assert accuracy[-1] > 0.65 and accuracy[-1] > accuracy[0] + 0.25


def test_online_deployment_beats_uniform(trained):
    """Sampling from its own growing context, the model pulls better arms than uniform pulls."""
    model, _ = trained
    means = torch.from_numpy(bandit_frame(300, K, H, 2)[1]).float()
    g = torch.Generator().manual_seed(0)
    zeros = torch.zeros(len(means), dtype=torch.long)

    def pull(actions):
        reward = means.gather(1, actions[:, None]).squeeze(1) + 0.3 * torch.randn(len(means), generator=g)
        return zeros, reward, zeros

    result = deploy_online(model, zeros, pull, H, generator=g)
    assert result["actions"].shape == (300, H)
    chosen = means.gather(1, result["actions"]).mean()
    assert chosen > means.mean() + 0.1  # uniform pulls average means.mean()
    late = means.gather(1, result["actions"][:, -5:]).mean()
    assert late > means.gather(1, result["actions"][:, :5]).mean()  # it improves as its context grows


def test_checkpoint_loads_weights_only_with_identical_logits(trained, tmp_path):
    model, _ = trained
    save_model(DPT, model, shape(), tmp_path / "model.pt", card())
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["shape"] == shape() and saved["card"] == card() and saved["method"] == "dpt"
    method, loaded, _ = load_model(tmp_path / "model.pt")
    assert method is DPT
    q, s, a, r, s2 = random_context(4, H, 1, K)
    with torch.no_grad():
        torch.testing.assert_close(loaded(q, s, a, r, s2), model(q, s, a, r, s2), rtol=0, atol=0)


def test_fit_is_seeded_and_resumes(tmp_path, monkeypatch):
    """Through wmrl.train.loop.fit (MLflow, checkpoints): two runs with one seed train the same
    weights, and a run stopped by SIGTERM at step 3, or killed between step 4's resume checkpoint and
    its validation, and rerun ends with them too, its snapshots (the context curve's checkpoints,
    one per validation) those of the unbroken run."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from wmrl import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "bandits"
    write_bandits(*bandit_frame(100, K, H, 0), data)
    tracking.prepare(["dpt-test"])
    trainer = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "precision": "32-true"}
    settings = {"steps": 6, "checkpoint_every": 2, "validate_every": 2, "grad_clip": 1.0, "holdout_fraction": 0.1,
                "schedule": "constant",
                "learning_rate": 1e-3, "batch_size": 16, "layers": 2, "trainer": trainer}

    def run(name: str):
        spec = {"dataset": str(data), "seed": 0, "work_dir": str(tmp_path / name), "run_name": name,
                "mlflow_experiment": "dpt-test", "tags": {"rule": "test"}, "method": "dpt", "model": settings,
                "registered_model": "wmrl-test-icrl", "alias": f"test-{name}"}
        train_icrl(spec, {"model": str(tmp_path / f"{name}.pt")})
        return torch.load(tmp_path / f"{name}.pt", weights_only=True)

    first, second = run("a"), run("b")
    assert sorted(first["snapshots"]) == ["2", "4", "6"]
    snapshots = first["snapshots"]
    assert any(not torch.equal(snapshots["2"][k], snapshots["6"][k]) for k in snapshots["2"])
    for key in first["state_dict"]:
        torch.testing.assert_close(snapshots["6"][key], first["state_dict"][key], rtol=0, atol=0)
    first, second = first["state_dict"], second["state_dict"]
    initial = IcrlModule("dpt", shape(), {"layers": 2}).model.state_dict()  # any init: training moved the weights
    assert any(not torch.equal(first[k], initial[k]) for k in first)
    for key in first:
        torch.testing.assert_close(second[key], first[key], rtol=0, atol=0)

    def stop(self, outputs, batch, index):
        if self.global_step == 3:
            raise SIGTERMException

    with monkeypatch.context() as patch:
        patch.setattr(IcrlModule, "on_train_batch_end", stop, raising=False)
        with pytest.raises(SystemExit) as stopped:
            run("c")
    assert stopped.value.code == 143 and (tmp_path / "c" / "checkpoints" / "last.ckpt").is_file()
    resumed = run("c")

    def die(self):  # killed between step 4's resume checkpoint and step 4's validation
        if self.global_step == 4:
            raise RuntimeError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(IcrlModule, "on_validation_start", die, raising=False)
        with pytest.raises(RuntimeError, match="killed"):
            run("d")
    for rerun in (resumed, run("d")):
        assert sorted(rerun["snapshots"]) == sorted(snapshots)
        for step, weights in snapshots.items():
            for key in weights:
                torch.testing.assert_close(rerun["snapshots"][step][key], weights[key], rtol=0, atol=0)


def test_history_stream_is_a_function_of_the_step():
    """Batch n depends on (seed, n) alone: what makes a resumed job see an unbroken job's batches."""
    histories = ContextArrays.from_frame(bandit_frame(50, K, H, 0)[0], card())
    data = HistoryData(DPT, DPTConfig(), histories, histories.subset(np.zeros(len(histories), bool)), 8, seed=0)

    class Trainer:
        global_step, global_rank, world_size = 0, 0, 1

    data.trainer = Trainer()
    stream = iter(data.train_dataloader())
    batches = [next(stream) for _ in range(3)]
    Trainer.global_step = 2
    torch.testing.assert_close(next(iter(data.train_dataloader())), batches[2])
    assert not torch.equal(batches[0]["task"], batches[1]["task"])


def test_darkroom_play_reads_its_previous_episodes_last_transitions():
    """DPT's Dark Room deployment: episode 1 from an empty context, each later one with the last H
    transitions of the episodes before it as context, fixed within the episode."""
    from wmrl.models.dpt import deploy_darkroom

    seen = []

    class Recorder(DecisionPretrainedTransformer):
        def forward(self, query_state, states, actions, rewards, next_states):
            seen.append(states.shape[1])
            return super().forward(query_state, states, actions, rewards, next_states)

    model = Recorder(16, 5, 6, DPTConfig(dim=8, layers=1), grid=4).eval()
    returns = deploy_darkroom(model, [(1, 2), (3, 3)], 3, 4, 4, torch.Generator().manual_seed(0))
    assert returns.shape == (2, 3) and ((0 <= returns) & (returns <= 4)).all()
    assert seen == [0] * 4 + [4] * 4 + [6] * 4  # H = 6: the whole first episode, then its last 6 steps


def test_the_cosine_schedule_decays_the_rate_to_zero():
    from wmrl.train.icrl import optimizer_schedule

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = optimizer_schedule(optimizer, "cosine", 10)["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(11):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-3) and rates[5] == pytest.approx(5e-4) and rates[10] == pytest.approx(0)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert optimizer_schedule(optimizer, "constant", 10) is optimizer
    with pytest.raises(ValueError, match="schedule"):
        optimizer_schedule(optimizer, "linear", 10)
