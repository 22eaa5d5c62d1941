"""What the parameterised notebooks call: parameter checks, data for a run, predictions, the metrics file.

The notebooks (notebooks/*.ipynb) orchestrate; this module computes. A notebook's parameters are the
names its `parameters` cell defines (papermill may inject new values); `validate` turns them into a
RunConfig and rejects any name that is neither a RunConfig field nor a parameter of that notebook.
"""
from __future__ import annotations

import json
import os
import platform
import types
from pathlib import Path

import torch

from iicrepro.config import FIELDS, make_config
from iicrepro.revision import code_revision

# Parameters of each notebook that are not RunConfig fields (RunConfig fields are accepted by name too).
NOTEBOOK_PARAMS = {
    "train": ("preset", "overrides", "data_cache", "synthetic", "max_eval_images", "max_batches", "num_examples",
              "out_dir", "resume", "metrics_path", "profile"),
    "baseline": ("preset", "kind", "overrides", "data_cache", "synthetic", "max_eval_images", "kmeans_pixels",
                 "kmeans_iterations", "num_examples", "metrics_path", "profile"),
    "datasets": ("preset", "overrides", "data_cache", "synthetic", "max_eval_images", "num_examples",
                 "metrics_path", "profile"),
    "summary": ("runs_dir", "pattern", "metrics_path", "profile"),
}
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
SYNTHETIC_SIZE = (48, 64)  # (H, W) of generated images


def user_names(namespace: dict) -> dict:
    """The plain values a notebook defined (its parameters), without IPython's names, modules, functions."""
    return {name: value for name, value in namespace.items()
            if not name.startswith("_") and name not in _IPYTHON_NAMES
            and not isinstance(value, types.ModuleType) and not callable(value)}


def check_names(namespace: dict, *, notebook: str, config_fields: bool = True) -> dict:
    """The notebook's parameters; a name that is neither one of them nor a RunConfig field raises."""
    params = user_names(namespace)
    known = set(NOTEBOOK_PARAMS[notebook]) | (set(FIELDS) if config_fields else set())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} of notebooks/{notebook}.ipynb: expected "
                         f"{sorted(known)}")
    return params


def validate(namespace: dict, *, notebook: str) -> tuple[dict, object]:
    """(parameters, RunConfig) from a notebook's namespace; unknown names raise a ValueError naming them.

    A RunConfig field left at None takes the preset's value; `overrides` (a dict) may set any field.
    """
    params = check_names(namespace, notebook=notebook)
    named = {k: v for k, v in params.items() if k in FIELDS and v is not None}
    overrides = dict(params.get("overrides") or {})
    twice = sorted(set(named) & set(overrides))
    if twice:
        raise ValueError(f"parameter(s) {twice} given both by name and in overrides")
    return params, make_config(preset=params.get("preset"), **named, **overrides)


def environment(device: str | None = None) -> dict:
    """What a run records about where it ran (printed first by every notebook)."""
    cuda = torch.cuda.is_available() and device != "cpu"
    return {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "python": platform.python_version(), "code_revision": code_revision()}


def load_data(config, *, cache=None, synthetic=False, max_eval_images: int | None = None):
    """(train_set, {"paper_eval": set, "heldout": set}) of a run ("heldout" absent when paper_split is on).

    data_fraction: a seeded random subset of the training images; max_images: at most that many of them;
    the paper protocol's evaluation set then keeps only the images trained on (it is transductive).
    synthetic: True, False or "auto" (generated images when the dataset cannot be found: smoke runs).
    Where the data comes from: see find_source; the sets' .info says which was used.
    """
    from iicrepro.data.splits import read_run_sets, restrict

    source = None if synthetic is True else find_source(config, cache)
    if source is None and synthetic not in (True, "auto"):
        raise FileNotFoundError(f"{config.dataset}: no prepared cache and no dataset files found (data_root="
                                f"{config.data_root!r}, data_cache={cache!r}, prescale={config.prescale}); see "
                                f"`iicrepro prepare --help`")
    if source is None:
        train_set, eval_sets = synthetic_sets(config)
    else:  # reading stops early at the caps when no fraction has to be drawn first
        cap = config.max_images if config.data_fraction == 1 else None
        train_set, eval_sets = read_run_sets(config.dataset, source=source, prescale=config.prescale,
                                             paper_split=config.paper_split, min_coverage=config.min_coverage,
                                             max_images=cap, max_eval_images=max_eval_images)
    return restrict(train_set, eval_sets, data_fraction=config.data_fraction, seed=config.seed,
                    max_images=config.max_images, max_eval_images=max_eval_images)


def find_source(config, cache=None) -> dict | None:
    """load_split's keyword arguments for the first place that holds the dataset, or None.

    Order: the given cache; the given data_root; the default cache at the run's pre-scale (<data root>/cache/
    <dataset>, or <dataset>@x<prescale> away from the preset's: what `iicrepro prepare [--prescale]` writes);
    the default data root ($IICREPRO_DATA, else ./data); ../shared/data.
    """
    from iicrepro.data import cache_dir, data_root, paths, shared_data_dir

    if cache is not None:
        return {"cache": cache}
    family = config.spec.family
    default_cache = cache_dir(config.dataset, data_root() / "cache", config.prescale)
    candidates = [("root", config.data_root)] if config.data_root is not None else [
        ("cache", default_cache), ("root", None), ("root", shared_data_dir())]
    for kind, place in candidates:
        if kind == "cache":
            if (Path(place) / "manifest.json").is_file():
                return {"cache": place}
            continue
        try:
            paths.source_dir(family, place)
            return {"root": place}
        except FileNotFoundError:
            continue
    return None


def synthetic_sets(config, *, num_train: int = 16, num_eval: int = 8):
    """Generated images for runs without data (smoke tests): one flat colour plus noise per class region.

    Each image is split into horizontal bands of random heights, each band a random class; the label map
    gives the class, the image its colour (from the dataset palette) plus Gaussian noise.
    """
    from iicrepro.data.base import make_set

    generator = torch.Generator().manual_seed(config.seed)
    spec = config.spec

    def make(split: str, count: int, offset: int):
        images, labels = [], []
        for _ in range(count):
            image, label = _synthetic_image(spec, generator)
            images.append(image)
            labels.append(label)
        ids = [f"synthetic/{offset + i}" for i in range(count)]
        return make_set(spec.name, split, images, labels, ids, class_names=spec.class_names,
                        mask_from_labels=spec.family in ("camvid", "cocostuff"), info={"source": "synthetic"},
                        channels=spec.image_channels)

    train = make("train", num_train, 0)
    return train, {"paper_eval": train.select(range(min(num_eval, num_train))), "heldout": make("heldout", num_eval, 1000)}


def _synthetic_image(spec, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 image (C, H, W) and label map (H, W) made of class bands."""
    height, width = SYNTHETIC_SIZE
    cuts = torch.sort(torch.randint(1, height, (spec.num_classes - 1,), generator=generator)).values.tolist()
    classes = torch.randperm(spec.num_classes, generator=generator).tolist()
    label = torch.zeros(height, width, dtype=torch.uint8)
    for band, (start, stop) in enumerate(zip([0] + cuts, cuts + [height])):
        label[start:stop] = classes[band]
    palette = torch.tensor(spec.palette, dtype=torch.float32)  # (classes, 3)
    colour = palette[label.long()].permute(2, 0, 1)  # (3, H, W)
    if spec.image_channels > 3:  # infrared: the mean colour
        colour = torch.cat([colour, colour.mean(dim=0, keepdim=True).expand(spec.image_channels - 3, -1, -1)])
    noisy = colour + 20 * torch.randn(colour.shape, generator=generator)
    return noisy.clamp(0, 255).to(torch.uint8), label


def save_metrics(path, **blocks) -> None:
    """Write the run's metrics (what iicrepro.runner merges into the run file) atomically, strict JSON."""
    if path is None:
        return
    from iicrepro.runner import write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, blocks)


def scratch_dir(out_dir, name: str = "iicrepro-run") -> Path:
    """out_dir, or a new temporary folder (checkpoints of a run that keeps none)."""
    if out_dir is not None:
        return Path(out_dir)
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"{name}-"))


def print_header(params: dict, config, env: dict) -> None:
    """The run's revision, environment and parameters, printed first (as DINO does)."""
    print(json.dumps({"environment": env, "parameters": {k: params[k] for k in sorted(params)},
                      "config": config.to_dict()}, indent=1, default=str))


def relative(path) -> str:
    """A path as the notebooks print it: relative to the working folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path(os.getcwd()).resolve()))
    except ValueError:
        return str(path)


def device_of(config) -> torch.device:
    """The device fit() uses for `config` (auto: CUDA when available)."""
    return torch.device("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")


def last_epoch_network(run_dir, config, history) -> dict:
    """The network of the last epoch (from run_dir/checkpoint.pt) with the Hungarian mapping its head B got
    on the label-free protocol's split: {"net", "mapping", "split", "epoch", "subhead"}."""
    from iicrepro import checkpoint, metrics
    from iicrepro.model import SegNet

    state = checkpoint.load_checkpoint(Path(run_dir) / checkpoint.CHECKPOINT_NAME)
    net = SegNet(config.in_channels, config.k_a, config.k_b, num_subheads=config.num_subheads, mode=config.mode)
    net.load_state_dict(state["model"])
    last = history["selection"]["last"]
    scores = history["epochs"][-1]["eval"][last["split"]]["b"]
    return {"net": net.to(device_of(config)).eval(), "mapping": metrics.match_hungarian(scores["confusion"]),
            "split": last["split"], "epoch": last["epoch"], "subhead": scores.get("subhead", 0)}


def network_predictor(net, config, subhead: int = 0):
    """images (B, C, H, W) in [0, 1] -> head-B cluster ids (B, H, W), as evaluation computes them."""
    from iicrepro.evaluate import network_input

    def predict(images: torch.Tensor) -> torch.Tensor:
        x = network_input(images, sobel=config.sobel)  # (B, C', H, W)
        return net(x, head="B")[subhead].argmax(dim=1)  # (B, H, W)
    return predict


def summary(selection: dict) -> str:
    """The run's result in one line per protocol."""
    lines = []
    for key in ("paper", "last", "lowest_loss"):
        entry = selection.get(key)
        if entry:
            acc, miou = entry.get("acc"), entry.get("miou")
            lines.append(f"{entry['rule']}: epoch {entry['epoch']}, {entry['split']} accuracy "
                         f"{_pct(acc)}, mean IoU {_pct(miou)}")
    return "\n".join(lines)


def _pct(value) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"
