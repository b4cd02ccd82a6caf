"""Minari in and out: exports read back exactly by Minari's own loader, imports equal the original rows."""

import json
import sys

import minari
import numpy as np
import polars as pl
import pytest
from minari.data_collector import EpisodeBuffer

from conftest import ROOT, make_spec
from wmrl.__main__ import main
from wmrl.config import ConfigError, compose
from wmrl.dag.specs import dataset_spec
from wmrl.data import DatasetError, open_dataset
from wmrl.data.card import dataset_card
from wmrl.data.generate import generate_dataset
from wmrl.data.job import dataset_job
from wmrl.data.minari import export_minari, import_minari, load_source
from wmrl.data.writer import DatasetWriter
from wmrl.provenance import dataset_digest

ENVS = {"breakout": "minatar:breakout", "cartpole": "CartPole-v1"}  # a bool grid, a float vector


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict:
    """A 400-step random-policy dataset of each of ENVS, in several shards: name -> (spec, directory)."""
    made = {}
    for name, env in ENVS.items():
        spec = make_spec(env=env, steps=400, shard_rows=150)
        out = tmp_path_factory.mktemp("datasets") / name
        generate_dataset(spec, out)
        made[name] = (spec, out)
    return made


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def episodes_of(directory) -> list[dict]:
    """Our dataset's episodes as Minari lays them out (T+1 observations, T of everything else)."""
    dataset = open_dataset(directory)
    frame = dataset.read()
    obs = dataset.observations(frame)
    episodes = []
    for (episode,), rows in frame.with_row_index().group_by("episode", maintain_order=True):
        steps = rows.filter(pl.col("action").is_not_null())
        episodes.append({"id": episode, "observations": obs[rows["index"].to_numpy()],
                         "actions": np.asarray(steps["action"].to_list()),
                         **{key: steps[column].to_numpy() for key, column in (
                             ("rewards", "reward"), ("terminations", "terminated"), ("truncations", "truncated"))}})
    return episodes


def assert_minari_holds(dataset_id: str, directory) -> None:
    """Minari's loader gives back every episode of our dataset, observations bit for bit."""
    loaded = minari.load_dataset(dataset_id)
    ours = episodes_of(directory)
    card = open_dataset(directory).card
    assert loaded.total_episodes == len(ours) == card["episodes"]
    assert loaded.total_steps == card["transitions"]
    for episode, expected in zip(loaded.iterate_episodes(), ours, strict=True):
        assert episode.id == expected["id"] and len(episode) == len(expected["rewards"])
        assert episode.observations.dtype == expected["observations"].dtype
        assert episode.observations.tobytes() == expected["observations"].tobytes()  # bit for bit
        assert np.array_equal(episode.actions, expected["actions"])
        for key in ("rewards", "terminations", "truncations"):
            assert getattr(episode, key).dtype == expected[key].dtype, key
            assert np.array_equal(getattr(episode, key), expected[key]), key


@pytest.mark.parametrize("name", ENVS)
def test_minari_reads_an_export_back_exactly(datasets, minari_root, name):
    _, directory = datasets[name]
    card = open_dataset(directory).card
    export_minari(directory, f"wmrl/{name}-v0")
    assert_minari_holds(f"wmrl/{name}-v0", directory)
    loaded = minari.load_dataset(f"wmrl/{name}-v0")
    assert loaded.storage.data_path.parent == minari_root / "wmrl" / f"{name}-v0"
    assert loaded.observation_space.shape == tuple(card["obs"]["shape"])
    assert loaded.observation_space.dtype == np.dtype(card["obs"]["dtype"])
    assert loaded.action_space.n == card["action"]["n"]
    metadata = loaded.storage.metadata
    assert metadata["data_format"] == "arrow" and metadata["jpeg_encoding"] is False
    assert metadata["wmrl"]["digest"] == dataset_digest(card)
    assert metadata["wmrl"]["env"]["id"] == ENVS[name] and metadata["wmrl"]["task"] == card["task"]
    assert metadata["wmrl"]["policy"]["name"] == "random"
    # the random policy's budget ran out mid-episode: cut, so truncated in Minari too
    last = list(loaded.iterate_episodes())[-1]
    assert last.truncations[-1] and not last.terminations[-1]


def test_uint8_frames_and_float_actions_round_trip_exactly(tmp_path, minari_root):
    """Frames large enough for Minari to JPEG-encode by default, and 1-D continuous actions."""
    rng = np.random.default_rng(0)
    obs = {"kind": "image", "shape": [40, 40, 3], "dtype": "uint8", "channels": []}
    action = {"kind": "continuous", "n": 0, "shape": [2]}
    spec = make_spec(env="synthetic")  # only names the card's task and env
    writer = DatasetWriter(tmp_path / "frames", obs, action, shard_rows=20)
    for length in (7, 12, 3):
        writer.reset(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
        for t in range(length):
            writer.step(rng.standard_normal(2).astype(np.float32).tolist(),
                        rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), float(rng.random()), t == length - 1, False)
    writer.close()
    card = dataset_card(spec, obs, action, writer, {"name": "random", "settings": {}, "reference_score": None})
    (tmp_path / "frames" / "card.json").write_text(json.dumps(card))
    assert len(card["shards"]) == 2

    export_minari(tmp_path / "frames", "wmrl/frames-v0")
    assert_minari_holds("wmrl/frames-v0", tmp_path / "frames")


@pytest.mark.parametrize("name", ENVS)
def test_an_import_equals_the_original_rows(datasets, minari_root, tmp_path, name):
    spec, directory = datasets[name]
    export_minari(directory, f"wmrl/{name}-v0")
    card = import_minari({**spec, "source": f"minari:wmrl/{name}-v0"}, tmp_path / "imported")
    imported, original = open_dataset(tmp_path / "imported"), open_dataset(directory)
    assert not (tmp_path / "imported.partial").exists()
    assert imported.read().equals(original.read())  # every column, policy_step too
    assert [s["sha256"] for s in card["shards"]] == [s["sha256"] for s in original.card["shards"]]
    assert card["policy"]["name"] == "minari" and card["policy"]["source"] == f"minari:wmrl/{name}-v0"
    assert card["policy"]["metadata"]["wmrl"]["digest"] == dataset_digest(original.card)
    assert card["obs"] == original.card["obs"] and card["action"] == original.card["action"]
    assert card["transitions"] == original.card["transitions"]


@pytest.mark.filterwarnings("ignore:.*is set to None|env_spec is None:UserWarning")  # Minari asks for metadata
def test_an_episode_without_an_end_is_imported_as_cut(minari_root, tmp_path):
    """A Minari episode that ends neither terminated nor truncated gets truncated on its last step."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    episodes = [EpisodeBuffer(observations=rng.standard_normal((length + 1, 4)).astype(np.float32),
                              actions=rng.integers(0, 2, length), rewards=np.ones(length),
                              terminations=np.arange(length) == length - 1 if ended else np.zeros(length, bool),
                              truncations=np.zeros(length, bool))
                for length, ended in ((5, True), (4, False))]
    minari.create_dataset_from_buffers("wmrl/unended-v0", episodes, observation_space=env.observation_space,
                                       action_space=env.action_space, data_format="arrow")
    import_minari({**make_spec(env="CartPole-v1"), "source": "minari:wmrl/unended-v0"}, tmp_path / "imported")
    steps = open_dataset(tmp_path / "imported").read().filter(pl.col("action").is_not_null())
    assert steps["terminated"].to_list() == [False] * 4 + [True] + [False] * 4
    assert steps["truncated"].to_list() == [False] * 5 + [False] * 3 + [True]


def test_an_import_must_fit_the_tasks_env(datasets, minari_root, tmp_path):
    export_minari(datasets["breakout"][1], "wmrl/breakout-v0")
    with pytest.raises(DatasetError, match="do not match task 'CartPole-v1''s env CartPole-v1"):
        import_minari({**make_spec(env="CartPole-v1"), "source": "minari:wmrl/breakout-v0"}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_bad_or_missing_source_fails_clearly(minari_root, tmp_path):
    with pytest.raises(ValueError, match="expected minari:<Minari dataset id>"):
        load_source("d4rl:door-human-v2")
    with pytest.raises(FileNotFoundError, match="no Minari dataset 'wmrl/absent-v0' at .*MINARI_DATASETS_PATH"):
        import_minari({**make_spec(), "source": "minari:wmrl/absent-v0"}, tmp_path / "out")


def test_export_refuses_a_taken_id_and_a_directory_that_is_no_dataset(datasets, minari_root, tmp_path):
    export_minari(datasets["breakout"][1], "wmrl/breakout-v0")
    with pytest.raises(FileExistsError, match="'wmrl/breakout-v0' already exists"):
        export_minari(datasets["cartpole"][1], "wmrl/breakout-v0")
    export_minari(datasets["cartpole"][1], "wmrl/breakout-v0", force=True)
    assert minari.load_dataset("wmrl/breakout-v0").storage.metadata["wmrl"]["env"]["id"] == "CartPole-v1"
    with pytest.raises(DatasetError, match="card.json: missing"):
        export_minari(tmp_path, "wmrl/nothing-v0")
    assert not (minari_root / "wmrl" / "nothing-v0").exists()


def test_the_cli_exports_with_one_line_errors(datasets, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "unused"))  # --path wins; restored afterwards
    directory, root = str(datasets["breakout"][1]), str(tmp_path / "minari")
    assert main(["export-minari", directory, "wmrl/cli-v0", "--path", root]) == 0
    assert capsys.readouterr().out.startswith(f"ok  {directory} -> Minari wmrl/cli-v0")
    assert minari.load_dataset("wmrl/cli-v0").total_steps == 400
    assert main(["export-minari", directory, "wmrl/cli-v0", "--path", root]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "already exists" in error
    assert main(["export-minari", directory, "wmrl/cli-v0", "--path", root, "--force"]) == 0
    assert main(["export-minari", str(tmp_path), "wmrl/other-v0", "--path", root]) == 1
    assert "is not a complete dataset" in capsys.readouterr().err


def test_a_config_source_must_name_minari_and_come_with_scores():
    with pytest.raises(ConfigError, match="'tasks.breakout.dataset.source' must be minari:<Minari dataset id>"):
        compose({"tasks": {"breakout": {"dataset": {"source": "d4rl:breakout"}}}}, ROOT)
    with pytest.raises(ConfigError, match="'tasks.cartpole.score' must set random"):
        compose({"experiment": "cartpole", "tasks": {"cartpole": {"dataset": {"source": "minari:wmrl/cartpole-v0"}}}},
                ROOT)


def test_a_task_sourced_from_minari_is_imported_by_the_dataset_stage(datasets, minari_root, tmp_path):
    export_minari(datasets["breakout"][1], "wmrl/breakout-v0")
    cfg = compose({"tasks": {"breakout": {"dataset": {"source": "minari:wmrl/breakout-v0"}}}}, ROOT)
    spec = dataset_spec(cfg, "breakout", "dqn", 0)
    assert spec["source"] == "minari:wmrl/breakout-v0" and "settings" not in spec  # steps do not apply
    assert dataset_spec(cfg, "breakout", "random", 0)["source"] == spec["source"]  # the same import
    untouched = dataset_spec(cfg, "seaquest", "dqn", 0)
    assert "source" not in untouched and untouched == dataset_spec(compose({}, ROOT), "seaquest", "dqn", 0)

    card = dataset_job(spec, tmp_path / "breakout")
    assert card["policy"]["source"] == "minari:wmrl/breakout-v0"
    assert card["task"] == "breakout" and card["env"]["id"] == "minatar:breakout" and card["seed"] == 0
    assert open_dataset(tmp_path / "breakout").read().equals(open_dataset(datasets["breakout"][1]).read())


@pytest.mark.e2e
def test_a_task_sourced_from_minari_trains_and_evaluates_in_the_smoke_pipeline(smoke_run, tmp_path):
    """Breakout's behaviour data exported to Minari, then read back as the task's source in a copy
    of the default smoke run: the stage imports it (the same shards, byte for byte), and our
    learner and d3rlpy's are fine-tuned on it and evaluated (two runs stand for the stages after
    it: every other run reads the data the same way)."""
    import shutil
    import subprocess

    from conftest import snakemake_command, snakemake_env

    workdir = tmp_path / "smoke"
    shutil.copytree(smoke_run, workdir, symlinks=True)
    dataset = workdir / "data/smoke/minatar/breakout/dqn/seed0"
    original = json.loads((dataset / "card.json").read_text())
    env = {**snakemake_env(), "MINARI_DATASETS_PATH": str(tmp_path / "minari")}
    exported = subprocess.run([sys.executable, "-m", "wmrl", "export-minari", str(dataset), "wmrl/breakout-dqn-v0"],
                              cwd=workdir, capture_output=True, text=True, env=env, timeout=300)
    assert exported.returncode == 0, exported.stderr[-2000:]
    (workdir / "minari.yaml").write_text(
        'tasks:\n  breakout:\n    dataset: {source: "minari:wmrl/breakout-dqn-v0", policies: [dqn]}\n')
    evaluations = [f"results/smoke/minatar_transfer/evaluate/breakout/n1000/{run}-seed0.parquet"
                   for run in ("bc/small-transformer", "d3rlpy_bc/d3rlpy")]
    before = {evaluation: (workdir / evaluation).stat().st_mtime_ns for evaluation in evaluations}
    result = subprocess.run(snakemake_command(*evaluations, "--cores", "2", "--config", "scale=smoke",
                                              "--configfile", "minari.yaml"),
                            cwd=workdir, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads((dataset / "card.json").read_text())
    assert card["policy"]["source"] == "minari:wmrl/breakout-dqn-v0"
    assert [s["sha256"] for s in card["shards"]] == [s["sha256"] for s in original["shards"]]
    for evaluation in evaluations:
        episodes = pl.read_parquet(workdir / evaluation)
        assert (workdir / evaluation).stat().st_mtime_ns > before[evaluation]  # rerun on the imported data
        assert len(episodes) > 0 and (episodes["length"] > 0).all()
