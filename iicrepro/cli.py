"""Command line: `iicrepro download|prepare|train|study|bench`.

    iicrepro download potsdam [--root data]
    iicrepro prepare camvid3 [--src ../shared/data] [--out data/cache] [--prescale 0.25]
    iicrepro train --preset camvid3 --epochs 20 --out runs/my-camvid3 --set lambda_b=1.0 --set jitter=0.1,0.1,0.1,0.1
    iicrepro study run [--only 'camvid3-*'] [--profile smoke|full] [--manifest study.yaml] [--out DIR] [--force]
    iicrepro study list [--profile full]
    iicrepro bench ...            (arguments are those of iicrepro.bench)

`train` overrides any RunConfig field (iicrepro/config.py) with --set NAME=VALUE, converted to the field's
type; the common ones also have their own flag. Every error is reported before any work starts.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import types
import typing
from pathlib import Path

from iicrepro.config import FIELDS, PRESETS, RunConfig, make_config

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
# Common RunConfig fields with a flag of their own (--batch-size, --lambda-b, ...); booleans get --no-X too.
FLAGS = ("seed", "batch_size", "lr", "input_size", "data_root", "data_fraction", "max_images", "device",
         "mode", "schedule", "half_side", "lambda_b", "overcluster", "bf16", "channels_last", "compile")


def _field_types() -> dict[str, typing.Any]:
    return typing.get_type_hints(RunConfig)


def convert(name: str, text: str):
    """Convert the text of a RunConfig field to the field's type (None, bool, int, float, str, tuples)."""
    kinds = _field_types()
    if name not in kinds:
        raise ValueError(f"unknown parameter {name!r}: valid names are {list(FIELDS)}")
    return _convert(name, text, kinds[name])


def _convert(name: str, text: str, kind):
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null"):
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:  # e.g. bf16: bool | str takes true/false, else the text ("auto")
            try:
                return _convert(name, text, option)
            except ValueError:
                continue
        return _convert(name, text, options[-1])
    if typing.get_origin(kind) is tuple:
        parts = [p for p in text.replace(" ", "").split(",") if p]
        if len(parts) != len(args):
            raise ValueError(f"{name}={text!r}: expected {len(args)} comma-separated values")
        return tuple(_convert(name, part, arg) for part, arg in zip(parts, args))
    if kind is bool:
        if text.strip().lower() not in TRUE | FALSE:
            raise ValueError(f"{name}={text!r}: expected true or false")
        return text.strip().lower() in TRUE
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected {kind.__name__}") from None


def _flag_type(name: str):
    """argparse type of a RunConfig field's flag (its error message names the field and the expected type)."""
    def parse(text: str):
        try:
            return convert(name, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    parse.__name__ = name
    return parse


def _add_train(sub) -> None:
    train = sub.add_parser("train", help="train one run (a preset plus overrides), write its history")
    train.add_argument("--preset", required=True, choices=sorted(PRESETS), help="paper preset or offline analogue")
    train.add_argument("--epochs", type=int, help="epochs (default: the RunConfig default)")
    train.add_argument("--out", required=True, type=Path, help="folder for checkpoint.pt and history.json")
    train.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                       help="override any RunConfig field (repeatable), e.g. --set lambda_b=1.0")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    train.add_argument("--max-batches", type=int, help="at most this many batches per head and epoch")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--cache", type=Path, help="prepared cache folder (default: found as the notebooks do)")
    train.add_argument("--synthetic", action="store_true", help="generated images instead of a dataset (a check)")
    kinds = _field_types()
    for name in FLAGS:
        flag = "--" + name.replace("_", "-")
        if kinds[name] is bool:
            train.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None)
        else:
            train.add_argument(flag, dest=name, metavar=name.upper(), default=None, type=_flag_type(name))


def _add_study(sub) -> None:
    study = sub.add_parser("study", help="run or list the runs of the study manifest")
    actions = study.add_subparsers(dest="action", required=True)
    for action in ("run", "list"):
        p = actions.add_parser(action, help=f"{action} the manifest's runs")
        p.add_argument("--manifest", type=Path, default=Path("study.yaml"))
        p.add_argument("--profile", default="full", help="a profile of the manifest: full (default) or smoke")
        p.add_argument("--out", type=Path, help="folder of the run files (default: the profile's out)")
        p.add_argument("--only", action="append", metavar="NAME", help="run names or glob patterns (repeatable)")
    run = actions.choices["run"]
    run.add_argument("--force", action="store_true", help="rerun even when parameters and code are unchanged")
    run.add_argument("--with-downloads", action="store_true", help="also run the runs marked `requires: download`")
    run.add_argument("--checkpoints", type=Path, help="keep checkpoints in CHECKPOINTS/NAME-KEY (KEY: the fingerprint "
                     "without epochs) and resume from them (default: checkpoints/PROFILE; an interrupted run, or "
                     "one given more epochs, continues from its last epoch)")
    run.add_argument("--no-checkpoints", action="store_true", help="keep no checkpoints (a rerun starts afresh)")
    run.add_argument("--log-output", action="store_true", help="echo the notebooks' output")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="iicrepro", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    download = sub.add_parser("download", help="download a paper dataset (official addresses, checksummed)")
    download.add_argument("name", help="dataset family: cocostuff or potsdam")
    download.add_argument("--root", type=Path, help="data root (default: $IICREPRO_DATA, else ./data)")
    prepare = sub.add_parser("prepare", help="make the compact cache of a dataset variant")
    prepare.add_argument("name", help="dataset variant, e.g. camvid3")
    prepare.add_argument("--src", type=Path, help="where the dataset lies (default: the data root)")
    prepare.add_argument("--out", type=Path, help="cache folder (default: <data root>/cache)")
    prepare.add_argument("--prescale", type=float, help="resize factor before cropping (default: the preset's); "
                         "a cache away from the preset's lands in <out>/<name>@x<prescale>")
    _add_train(sub)
    _add_study(sub)
    sub.add_parser("bench", help="speed and memory benchmarks (see `iicrepro bench --help`)", add_help=False)
    return top


def train_config(args: argparse.Namespace):
    """RunConfig from --preset, the direct flags, --epochs and --set (--set wins over a flag)."""
    overrides = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    for item in args.set:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected NAME=VALUE")
        overrides[name.strip()] = convert(name.strip(), text)
    return make_config(preset=args.preset, **overrides)


def _train(args: argparse.Namespace) -> int:
    from iicrepro import experiment
    from iicrepro.history import HISTORY_NAME
    from iicrepro.train import fit  # heavy imports only for the commands that need them

    config = train_config(args)
    train_set, eval_sets = experiment.load_data(config, cache=args.cache, synthetic=args.synthetic)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
    history = fit(config, out_dir=args.out, resume=args.resume, progress=not args.no_progress,
                  train_set=train_set, eval_sets=eval_sets, max_batches=args.max_batches)
    history = history.to_dict()  # fit wrote it to --out/history.json after every epoch
    for rule, chosen in history.get("selection", {}).items():
        print(f"{rule}: epoch {chosen.get('epoch')} acc {chosen.get('acc')} miou {chosen.get('miou')}")
    print(f"history: {args.out / HISTORY_NAME}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from iicrepro import runner, study

    loaded = study.load_study(args.manifest, profile=args.profile, out=args.out)
    runs = study.select(loaded, args.only)
    if args.action == "list":
        for run, status in runner.statuses(loaded):
            if run in runs:
                print(f"{run.name:32s} {run.study_group:22s} {run.variant:12s} {status}")
        print(f"({len(runs)} runs; run files in {os.path.relpath(loaded.out)})")
        return 0
    checkpoints = None if args.no_checkpoints else (args.checkpoints or loaded.root / "checkpoints" / loaded.profile)
    results = runner.run_study(loaded, runs, force=args.force, with_downloads=args.with_downloads,
                               checkpoints=checkpoints, log_output=args.log_output)
    failed = [(run, record) for run, action, record in results if action == "failed"]
    counts = {a: sum(1 for _, b, _ in results if b == a) for a in ("ok", "skipped", "alias", "not run", "failed")}
    print(", ".join(f"{n} {a}" for a, n in counts.items() if n))
    for run, record in failed:
        print(f"FAILED {run.name}: {runner.describe_failure(record['failure'])}; notebook "
              f"{loaded.out / (run.name + '.ipynb')}", file=sys.stderr)
    return 1 if failed else 0


def _call(module: str, function: str, **kwargs) -> int:
    """Call a function of another part of the package, with a clear error when it is not there."""
    try:
        target = getattr(importlib.import_module(module), function)
    except (ModuleNotFoundError, AttributeError) as error:
        raise ValueError(f"{module}.{function} is not available in this checkout ({error})") from None
    target(**kwargs)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after `bench` belongs to iicrepro.bench
        return _bench(argv[1:])
    args = parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "study":
            return _study(args)
        if args.command == "download":
            return _call("iicrepro.data.download", "download", name=args.name, root=args.root)
        return _call("iicrepro.data.prepare", "prepare", name=args.name, src=args.src, out=args.out,
                     prescale=args.prescale)
    except (ValueError, FileNotFoundError) as error:
        print(f"iicrepro {args.command}: error: {error}", file=sys.stderr)
        return 2


def _bench(argv: list[str]) -> int:
    try:
        bench = importlib.import_module("iicrepro.bench")
    except ModuleNotFoundError as error:
        if error.name != "iicrepro.bench":
            raise
        print("iicrepro bench: error: the benchmarks (iicrepro/bench/) are not part of this checkout",
              file=sys.stderr)
        return 2
    return bench.main(argv) or 0


if __name__ == "__main__":
    sys.exit(main())
