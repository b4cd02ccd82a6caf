"""Command line: every stage callable without Snakemake (``python -m wmrl <stage> ...``)."""

from __future__ import annotations

import argparse
import json
import sys

from wmrl import logs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmrl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate-dataset", help="generate one offline dataset")
    gen.add_argument("--spec", required=True, help="the dataset spec as JSON (see wmrl.pipeline.dataset_spec)")
    gen.add_argument("--out", required=True, help="output directory")

    train = commands.add_parser("pretrain", help="pretrain one world-action model (resumes if interrupted)")
    train.add_argument("--spec", required=True, help="the job spec as JSON (see wmrl.pipeline.pretrain_spec)")
    train.add_argument("--out-dir", required=True, help="where model.pt, model.mlflow.json, heldout.parquet go")
    train.add_argument("--threads", type=int, default=2)

    tune = commands.add_parser("finetune", help="fine-tune one model on a held-out task (resumes if interrupted)")
    tune.add_argument("--spec", required=True, help="the job spec as JSON (see wmrl.pipeline.finetune_spec)")
    tune.add_argument("--out-dir", required=True, help="where last.pt, best.pt, curve.parquet, ... go")
    tune.add_argument("--threads", type=int, default=1)

    online = commands.add_parser("train-online", help="train the online DQN baseline on a held-out task")
    online.add_argument("--spec", required=True, help="the job spec as JSON (see wmrl.pipeline.finetune_spec)")
    online.add_argument("--out-dir", required=True, help="where last.pt, curve.parquet, model.mlflow.json go")

    peer = commands.add_parser("train-peer", help="train a d3rlpy peer on a held-out task's few-shot data")
    peer.add_argument("--spec", required=True, help="the job spec as JSON (see wmrl.pipeline.finetune_spec)")
    peer.add_argument("--out-dir", required=True, help="where last.pt, curve.parquet, model.mlflow.json go")

    play = commands.add_parser("evaluate", help="play evaluation episodes of one trained model")
    play.add_argument("--spec", required=True, help="the job spec as JSON (see wmrl.pipeline.evaluate_spec)")
    play.add_argument("--out", required=True, help="the episode rows (X.parquet); lineage goes to X.lineage.json")

    error = commands.add_parser("world-model-error", help="open-loop prediction error of a pretrained model")
    error.add_argument("--spec", required=True, help="the job spec as JSON (see wmrl.pipeline.world_model_spec)")
    error.add_argument("--out", required=True, help="error by task and horizon (Parquet)")

    report = commands.add_parser("report", help="the experiment's scores, figures, tables and HTML report")
    report.add_argument("--spec", required=True, help="the job spec as JSON (see wmrl.pipeline.report_spec)")
    report.add_argument("--out-dir", required=True, help="where report.html, scores/, figures/, tables/ go")

    histories = commands.add_parser("icrl-histories", help="write one in-context pretraining dataset")
    histories.add_argument("--spec", required=True, help="the job spec as JSON (wmrl.pipeline.icrl_histories_spec)")
    histories.add_argument("--out", required=True, help="output directory")

    dpt = commands.add_parser("icrl-pretrain", help="pretrain one DPT model (resumes if interrupted)")
    dpt.add_argument("--spec", required=True, help="the job spec as JSON (see wmrl.pipeline.icrl_pretrain_spec)")
    dpt.add_argument("--out-dir", required=True, help="where model.pt and model.mlflow.json go")
    dpt.add_argument("--threads", type=int, default=1)

    icrl_eval = commands.add_parser("icrl-evaluate", help="play a DPT model or the baselines on held-out tasks")
    icrl_eval.add_argument("--spec", required=True, help="the job spec as JSON (wmrl.pipeline.icrl_evaluate_spec)")
    icrl_eval.add_argument("--out", required=True, help="the rows (Parquet)")

    tracking = commands.add_parser("prepare-tracking", help="create the MLflow store and an experiment")
    tracking.add_argument("experiment")

    check = commands.add_parser("check-dataset", help="validate a dataset directory (card, schema, sha256)")
    check.add_argument("directory", nargs="+")

    export = commands.add_parser("export-minari", help="write a dataset as a Minari dataset (arrow, lossless)")
    export.add_argument("dataset", help="the dataset directory")
    export.add_argument("id", help="the Minari dataset id, e.g. wmrl/breakout-dqn-v0")
    export.add_argument("--path", help="the Minari datasets root (default: MINARI_DATASETS_PATH, else "
                                       "~/.minari/datasets)")
    export.add_argument("--force", action="store_true", help="replace a Minari dataset of that id")

    bench = commands.add_parser("bench", help="run a benchmark and write its figures to JSON")
    bench.add_argument("name", choices=["dataset", "pretrain", "dag", "finetune"])
    bench.add_argument("--steps", type=int, default=200_000, help="dataset: env steps per game and measurement")
    bench.add_argument("--threads", type=int, help="torch threads (pretrain: 2, finetune: 1, as the jobs use)")
    bench.add_argument("--methods", default="scratch,bc,d3rlpy_bc",
                       help="finetune: the methods timed against the reference peer (finetune.methods names)")
    bench.add_argument("--reference", default="d3rlpy_cql", help="finetune: the peer whose score is the target")
    bench.add_argument("--reference-steps", type=int, default=10_000, help="finetune: the reference's steps")
    bench.add_argument("--seeds", default="0,1", help="finetune: training seeds, comma-separated")
    bench.add_argument("--episodes", type=int, default=20, help="finetune: evaluation episodes per check and seed")
    bench.add_argument("--scale", default="laptop", help="finetune: the scale whose settings and data are used")
    bench.add_argument("--out", help="figures JSON (default results/bench/<name>.json)")

    args = parser.parse_args(argv)
    logs.setup()

    if args.command == "generate-dataset":
        from wmrl.data.generate import generate_dataset

        generate_dataset(json.loads(args.spec), args.out)
    elif args.command == "pretrain":
        from wmrl.pipeline import PRETRAIN_FILES
        from wmrl.train.pretrain import pretrain

        pretrain(json.loads(args.spec), out_files(args.out_dir, PRETRAIN_FILES), threads=args.threads)
    elif args.command == "finetune":
        from wmrl.pipeline import FINETUNE_FILES
        from wmrl.train.finetune import finetune

        finetune(json.loads(args.spec), out_files(args.out_dir, FINETUNE_FILES), threads=args.threads)
    elif args.command == "train-online":
        from wmrl.pipeline import ONLINE_FILES
        from wmrl.train.online import train_online

        train_online(json.loads(args.spec), out_files(args.out_dir, ONLINE_FILES))
    elif args.command == "train-peer":
        from wmrl.pipeline import PEER_FILES
        from wmrl.train.peer import train_peer

        train_peer(json.loads(args.spec), out_files(args.out_dir, PEER_FILES))
    elif args.command == "evaluate":
        from wmrl.evaluate.rollout import evaluate
        from wmrl.pipeline import evaluate_lineage

        evaluate(json.loads(args.spec), {"rows": args.out, "lineage": evaluate_lineage(args.out)})
    elif args.command == "world-model-error":
        from wmrl.evaluate.world_model import world_model_error

        world_model_error(json.loads(args.spec), args.out)
    elif args.command == "report":
        from wmrl.pipeline import report_layout
        from wmrl.report.build import build_report

        spec = json.loads(args.spec)
        layout = report_layout(len(spec["sizes"]), len(spec["backbones"]), bool(spec["probe_delays"]))
        build_report(spec, out_files(args.out_dir, layout))
    elif args.command == "icrl-histories":
        from wmrl.icrl.histories import generate_histories

        generate_histories(json.loads(args.spec), args.out)
    elif args.command == "icrl-pretrain":
        from wmrl.pipeline import ICRL_PRETRAIN_FILES
        from wmrl.train.dpt import train_dpt

        train_dpt(json.loads(args.spec), out_files(args.out_dir, ICRL_PRETRAIN_FILES), threads=args.threads)
    elif args.command == "icrl-evaluate":
        from wmrl.icrl.evaluate import evaluate_icrl

        evaluate_icrl(json.loads(args.spec), args.out)
    elif args.command == "prepare-tracking":
        from wmrl.tracking import prepare

        print(prepare([args.experiment]))
    elif args.command == "check-dataset":
        from wmrl.data import DatasetError, open_dataset

        failed = 0
        for directory in args.directory:
            try:
                card = open_dataset(directory).card
                print(f"ok  {directory}: {card['transitions']:,} transitions, {card['episodes']} episodes")
            except DatasetError as exc:
                print(f"BAD {exc}")
                failed += 1
        return 1 if failed else 0
    elif args.command == "export-minari":
        import os

        from wmrl.data import DatasetError

        if args.path:
            os.environ["MINARI_DATASETS_PATH"] = args.path  # where Minari reads and writes its datasets
        from wmrl.data.minari import export_minari

        try:
            exported = export_minari(args.dataset, args.id, force=args.force)
        except (DatasetError, FileExistsError, ValueError) as exc:
            print(f"export-minari: {exc}", file=sys.stderr)
            return 1
        print(f"ok  {args.dataset} -> Minari {args.id}: {exported.total_episodes} episodes, "
              f"{exported.total_steps:,} steps at {exported.spec.data_path}")
    elif args.command == "bench":
        out = args.out or f"results/bench/{args.name}.json"
        if args.name == "dataset":
            from wmrl.bench import dataset as bench_dataset

            bench_dataset.main(args.steps, out)
        elif args.name == "dag":
            from wmrl.bench import dag as bench_dag

            bench_dag.main(out)
        elif args.name == "finetune":
            from wmrl.bench import finetune as bench_finetune

            bench_finetune.main(args.methods.split(","), args.reference, args.reference_steps,
                                [int(s) for s in args.seeds.split(",")], args.episodes, args.threads or 1, out,
                                args.scale)
        else:
            from wmrl.bench import pretrain as bench_pretrain

            bench_pretrain.main(args.threads or 2, out)
    return 0


def out_files(directory: str, names: dict[str, str]) -> dict[str, str]:
    """A stage's output files (key -> file name) inside `directory`, which is created."""
    from pathlib import Path

    Path(directory).mkdir(parents=True, exist_ok=True)
    return {key: str(Path(directory) / name) for key, name in names.items()}


if __name__ == "__main__":
    sys.exit(main())
