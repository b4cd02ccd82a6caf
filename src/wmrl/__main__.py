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

    tracking = commands.add_parser("prepare-tracking", help="create the MLflow store and an experiment")
    tracking.add_argument("experiment")

    check = commands.add_parser("check-dataset", help="validate a dataset directory (card, schema, sha256)")
    check.add_argument("directory", nargs="+")

    bench = commands.add_parser("bench", help="run a benchmark and write its figures to JSON")
    bench.add_argument("name", choices=["dataset", "pretrain"])
    bench.add_argument("--steps", type=int, default=200_000, help="dataset: env steps per game and measurement")
    bench.add_argument("--threads", type=int, default=2, help="pretrain: torch threads")
    bench.add_argument("--out", help="figures JSON (default results/bench/<name>.json)")

    args = parser.parse_args(argv)
    logs.setup()

    if args.command == "generate-dataset":
        from wmrl.data.generate import generate_dataset

        generate_dataset(json.loads(args.spec), args.out)
    elif args.command == "pretrain":
        from pathlib import Path

        from wmrl.pipeline import PRETRAIN_FILES
        from wmrl.train.pretrain import pretrain

        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        pretrain(json.loads(args.spec), {key: str(out / name) for key, name in PRETRAIN_FILES.items()},
                 threads=args.threads)
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
    elif args.command == "bench":
        out = args.out or f"results/bench/{args.name}.json"
        if args.name == "dataset":
            from wmrl.bench import dataset as bench_dataset

            bench_dataset.main(args.steps, out)
        else:
            from wmrl.bench import pretrain as bench_pretrain

            bench_pretrain.main(args.threads, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
