"""Command line: every stage callable without Snakemake (``python -m wmrl <stage> ...``)."""

from __future__ import annotations

import argparse
import json
import sys

from wmrl import logs
from wmrl.jobs import SpecError
from wmrl.methods import KINDS, RULES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmrl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def job(name: str, help: str, spec: str, out: str, out_help: str, threads: int | None = None) -> None:
        """A subcommand that runs one pipeline job from its spec (the JSON a rule passes as params)."""
        command = commands.add_parser(name, help=help)
        command.add_argument("--spec", required=True, help=f"the job spec as JSON (see wmrl.dag.{spec})")
        command.add_argument(out, required=True, help=out_help)
        if threads is not None:
            command.add_argument("--threads", type=int, default=threads)

    job("generate-dataset", "generate one offline dataset", "specs.dataset_spec", "--out", "output directory")
    job("pretrain", "pretrain one world-action model (resumes if interrupted)", "specs.pretrain_spec", "--out-dir",
        "where model.pt, model.mlflow.json, heldout.parquet go", threads=2)
    for rule, kind in RULES.items():  # one subcommand per training rule, named like it: finetune, train-online, ...
        kinds = ", ".join(name for name, other in KINDS.items() if other.rule == rule)
        job(rule.replace("_", "-"), f"train one fine-tuning run of a method of kind {kinds} (wmrl.methods)",
            "specs.finetune_spec", "--out-dir", f"where {', '.join(kind.files.values())} go", threads=1)
    job("evaluate", "play evaluation episodes of one trained model", "specs.evaluate_spec", "--out",
        "the episode rows (X.parquet); lineage goes to X.lineage.json")
    job("world-model-error", "open-loop prediction error of a pretrained model", "specs.world_model_spec", "--out",
        "error by task and horizon (X.parquet); the memory probe's rows go to X.probe.parquet")
    job("report", "the experiment's scores, figures, tables and HTML report", "reporting.report_spec", "--out-dir",
        "where report.html, scores/, figures/, tables/ go")
    job("icrl-histories", "write one in-context pretraining dataset", "icrl.histories_spec", "--out",
        "output directory")
    job("icrl-pretrain", "pretrain one DPT model (resumes if interrupted)", "icrl.pretrain_spec", "--out-dir",
        "where model.pt and model.mlflow.json go", threads=1)
    job("icrl-evaluate", "play a DPT model or the baselines on held-out tasks", "icrl.evaluate_spec", "--out",
        "the rows (Parquet)")

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
    bench.add_argument("name", choices=["dataset", "pretrain", "dag", "finetune", "icrl", "imagine", "kernels"])
    bench.add_argument("--steps", type=int, help="dataset: env steps per game and measurement (200,000); "
                                                 "kernels: the timed DQN dataset's env steps (5,000); icrl: timed "
                                                 "training steps per model (50); imagine: N, the timed updates (100; "
                                                 "env steps and DQN's steps are multiples of it)")
    bench.add_argument("--threads", type=int, help="torch threads (pretrain: 2, finetune, icrl and imagine: 1, as the "
                                                   "jobs use)")
    bench.add_argument("--methods", default="scratch,bc,d3rlpy_bc",
                       help="finetune: the methods timed against the reference peer (finetune.methods names)")
    bench.add_argument("--reference", default="d3rlpy_cql", help="finetune: the peer whose score is the target")
    bench.add_argument("--reference-steps", type=int, default=10_000, help="finetune: the reference's steps")
    bench.add_argument("--max-steps", type=int, default=1_000, help="finetune: the other methods' steps at most")
    bench.add_argument("--seeds", default="0,1", help="finetune: training seeds, comma-separated")
    bench.add_argument("--episodes", type=int, default=20, help="finetune: evaluation episodes per check and seed")
    bench.add_argument("--scale", default="laptop", help="finetune and imagine: the scale whose settings (and "
                                                         "finetune's data) are used")
    bench.add_argument("--experiment", default="imagination_control",
                       help="imagine: the experiment whose held-out task, imagine_scratch and dqn_online are timed")
    bench.add_argument("--out", help="figures JSON (default results/bench/<name>.json)")

    args = parser.parse_args(argv)
    logs.setup()
    try:
        return run(args)
    except SpecError as error:  # a hand-written --spec that does not fit its job: one line, no traceback
        print(f"wmrl {args.command}: {error}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """Run the subcommand `args` names; its exit status."""

    if args.command == "generate-dataset":
        from wmrl.data.job import dataset_job

        dataset_job(json.loads(args.spec), args.out)
    elif args.command == "pretrain":
        from wmrl.dag.paths import PRETRAIN_FILES
        from wmrl.train.pretrain import pretrain

        pretrain(json.loads(args.spec), out_files(args.out_dir, PRETRAIN_FILES), threads=args.threads)
    elif args.command.replace("-", "_") in RULES:
        kind = RULES[args.command.replace("-", "_")]
        kind.train(json.loads(args.spec), out_files(args.out_dir, kind.files), threads=args.threads)
    elif args.command == "evaluate":
        from wmrl.dag.paths import evaluate_lineage
        from wmrl.evaluate.rollout import evaluate

        evaluate(json.loads(args.spec), {"rows": args.out, "lineage": evaluate_lineage(args.out)})
    elif args.command == "world-model-error":
        from wmrl.dag.paths import memory_probe_file
        from wmrl.evaluate.world_model import world_model_error

        world_model_error(json.loads(args.spec), args.out, memory_probe_file(args.out))
    elif args.command == "report":
        from wmrl.dag.paths import report_layout
        from wmrl.report.build import build_report

        spec = json.loads(args.spec)
        layout = report_layout(len(spec["sizes"]), len(spec["backbones"]), bool(spec["probe_delays"]),
                               spec["control"] is not None)
        build_report(spec, out_files(args.out_dir, layout))
    elif args.command == "icrl-histories":
        from wmrl.icrl.generate import generate_histories

        generate_histories(json.loads(args.spec), args.out)
    elif args.command == "icrl-pretrain":
        from wmrl.dag.paths import ICRL_PRETRAIN_FILES
        from wmrl.train.icrl import train_icrl

        train_icrl(json.loads(args.spec), out_files(args.out_dir, ICRL_PRETRAIN_FILES), threads=args.threads)
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

            bench_dataset.main(args.steps or 200_000, out)
        elif args.name == "dag":
            from wmrl.bench import dag as bench_dag

            bench_dag.main(out)
        elif args.name == "finetune":
            from wmrl.bench import finetune as bench_finetune

            bench_finetune.main(args.methods.split(","), args.reference, args.reference_steps,
                                [int(s) for s in args.seeds.split(",")], args.episodes, args.threads or 1, out,
                                args.scale, args.max_steps)
        elif args.name == "icrl":
            from wmrl.bench import icrl as bench_icrl

            bench_icrl.main(args.threads or 1, out, args.steps or 50)
        elif args.name == "imagine":
            from wmrl.bench import imagine as bench_imagine

            bench_imagine.main(args.experiment, args.scale, args.steps or 100, args.threads or 1, out)
        elif args.name == "kernels":
            from wmrl.bench import kernels as bench_kernels

            bench_kernels.main(args.steps or 5_000, out)
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
