"""Run configuration: the one home of defaults and of the paper presets.

Every number of the paper's Table-4 runs (Ji, Henriques, Vedaldi, ICCV 2019, Table 4 and supplement,
as used by the authors' released commands) lives here and nowhere else. A run is described by one
frozen `RunConfig`; `make_config(preset=..., **overrides)` is the only way notebooks and the CLI
build one, so a mistyped parameter name fails before any work starts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODES = ("faithful", "clean")
SCHEDULES = ("paper", "released")  # paper: alternate heads per epoch (A first); released: A then B each epoch
LOSS_IMPLS = ("auto", "conv", "shift", "fft", "fftmm")  # "auto" + iicrepro.loss.LOSS_IMPLS
DEVICES = ("auto", "cpu", "cuda")
BF16_SETTINGS = (True, False, "auto")  # "auto": where the hardware multiplies bf16 natively (iicrepro.precision)


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset variant is: its classes, channels and colours (for figures)."""

    name: str  # e.g. "camvid3"
    family: str  # module in iicrepro.data: "cocostuff", "potsdam", "camvid", "dubai"
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # RGB per class, same order as class_names
    image_channels: int  # channels stored in the data: 3 (RGB) or 4 (RGB + IR)
    offline: bool  # True when the data is available without a download (../shared/data)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_STUFF3 = (("sky", (70, 130, 180)), ("plant", (60, 160, 60)), ("ground", (128, 96, 64)))
_COCO15 = ("ceiling", "floor", "food", "furniture", "rawmaterial", "textile", "wall", "window",
           "building", "ground", "plant", "sky", "solid", "structural", "water")
_TAB20 = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
          (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213))
_CAMVID11 = ("sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car",
             "pedestrian", "bicyclist")
_POTSDAM6 = (("road", (255, 255, 255)), ("building", (0, 0, 255)), ("low vegetation", (0, 255, 255)),
             ("tree", (0, 255, 0)), ("car", (255, 255, 0)), ("clutter", (255, 0, 0)))
_POTSDAM3 = (("road+car", (200, 200, 200)), ("building+clutter", (40, 60, 220)),
             ("vegetation", (40, 180, 60)))
_DUBAI5 = (("building", (60, 16, 152)), ("land", (132, 41, 246)), ("road", (110, 193, 228)),
           ("vegetation", (254, 221, 58)), ("water", (226, 169, 41)))
# Dubai-3 is our merge, drawn in colours that tell the three groups apart (the source's land and building
# colours are two purples); Dubai-5 keeps the source's colours.
_DUBAI3 = (("bare land", (222, 196, 140)), ("built-up", (170, 40, 40)),
           ("vegetation+water", (40, 150, 70)))


def _spec(name: str, family: str, classes, channels: int, offline: bool) -> DatasetSpec:
    """Build a DatasetSpec from (name, colour) pairs or from bare names (palette from tab20)."""
    if isinstance(classes[0], tuple):
        names, colours = zip(*classes)
    else:
        names, colours = tuple(classes), _TAB20[: len(classes)]
    return DatasetSpec(name, family, tuple(names), tuple(colours), channels, offline)


DATASETS: dict[str, DatasetSpec] = {
    s.name: s for s in (
        _spec("cocostuff3", "cocostuff", _STUFF3, 3, offline=False),
        _spec("cocostuff15", "cocostuff", _COCO15, 3, offline=False),
        _spec("potsdam3", "potsdam", _POTSDAM3, 4, offline=False),
        _spec("potsdam6", "potsdam", _POTSDAM6, 4, offline=False),
        _spec("camvid3", "camvid", _STUFF3, 3, offline=True),
        _spec("camvid11", "camvid", _CAMVID11, 3, offline=True),
        _spec("dubai3", "dubai", _DUBAI3, 3, offline=True),
        _spec("dubai5", "dubai", _DUBAI5, 3, offline=True),
    )
}


@dataclass(frozen=True)
class RunConfig:
    """All parameters of one training run (flat, so papermill and the CLI can override any field)."""

    # -- data --
    dataset: str = "camvid3"  # key of DATASETS
    data_root: str | None = None  # None: $IICREPRO_DATA, else ./data (see iicrepro.data.paths)
    input_size: int = 128  # side of the square crop fed to the network (paper: 128 COCO, 200 Potsdam)
    prescale: float = 0.33  # resize factor applied before cropping (paper: x0.33 COCO, none Potsdam)
    data_fraction: float = 1.0  # fraction of training images used (dataset-size ablation)
    max_images: int | None = None  # hard cap on training images (smoke runs)
    paper_split: bool = False  # True: the paper's transductive sets (train on every image, score every labelled
    #   one; no held-out split, so the label-free rules score those too). False: a held-out split is kept apart
    min_coverage: float = 0.0  # keep images with at least this share of counted pixels (CamVid's analogue of
    #   COCO's 75% rule), in every split; 0 keeps all
    # -- views (facts section 3) --
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.125)  # brightness, contrast, saturation, hue
    flip_p: float = 0.5  # probability of flipping the second view horizontally
    sobel: bool = True  # append Sobel dx, dy of the greyscale image as input channels
    # -- model (facts section 4) --
    mode: str = "faithful"  # "faithful" keeps the original quirks; "clean" drops them (see model.py)
    k_a: int = 15  # clusters of head A (overclustering)
    k_b: int = 3  # clusters of head B (= number of classes)
    num_subheads: int = 1  # sub-heads per head; their losses are averaged
    overcluster: bool = True  # train head A too; False trains head B only
    # -- loss (facts section 5) --
    half_side: int = 10  # d: displacements t in [-d, d]^2
    lambda_a: float = 1.0  # lambda of head A's loss
    lambda_b: float = 1.5  # lambda of head B's loss
    loss_impl: str = "auto"  # "conv" (the authors' form), "shift" (shifted products), "fft" or "auto"
    # -- optimisation (facts section 2, 6) --
    batch_size: int = 120  # pairs per batch
    lr: float = 1e-4  # Adam, constant learning rate
    epochs: int = 10  # epochs; with schedule "paper" each epoch trains one head
    schedule: str = "paper"  # "paper": alternate heads per epoch, A first; "released": A then B per epoch
    seed: int = 0  # seeds torch, numpy and the data order
    # -- engineering (not in the paper) --
    device: str = "auto"  # "auto", "cpu" or "cuda"
    bf16: bool | str = False  # bf16 autocast (CPU or CUDA); "auto": where bf16 is native (iicrepro.precision)
    channels_last: bool = False  # channels_last memory format (CPU or CUDA)
    compile: bool = False  # torch.compile the network
    checkpointing: bool = False  # activation checkpointing of the trunk (saves memory, costs speed)
    eval_batch_size: int = 64  # images per evaluation batch
    eval_every: int = 1  # evaluate after every N-th epoch and after the last; skipped epochs have eval {}
    #   (the dataset-size ablation: N = 1 / fraction, so every size is scored after the same training images)
    num_workers: int = 0  # DataLoader workers for datasets that do not live in device memory

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def spec(self) -> DatasetSpec:
        return DATASETS[self.dataset]

    @property
    def in_channels(self) -> int:
        """Network input channels: image channels plus 2 Sobel channels when enabled."""
        return self.spec.image_channels + (2 if self.sobel else 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _validate(cfg: RunConfig) -> None:
    """Raise ValueError naming the bad parameter (before any training starts)."""
    checks = [
        (cfg.dataset in DATASETS, f"dataset={cfg.dataset!r}: expected one of {sorted(DATASETS)}"),
        (cfg.mode in MODES, f"mode={cfg.mode!r}: expected one of {MODES}"),
        (cfg.schedule in SCHEDULES, f"schedule={cfg.schedule!r}: expected one of {SCHEDULES}"),
        (cfg.loss_impl in LOSS_IMPLS, f"loss_impl={cfg.loss_impl!r}: expected one of {LOSS_IMPLS}"),
        (cfg.device in DEVICES, f"device={cfg.device!r}: expected one of {DEVICES}"),
        (cfg.bf16 in BF16_SETTINGS, f"bf16={cfg.bf16!r}: expected true, false or \"auto\""),
        (cfg.input_size >= 16, f"input_size={cfg.input_size}: expected >= 16"),
        (cfg.prescale > 0, f"prescale={cfg.prescale}: expected > 0"),
        (0 < cfg.data_fraction <= 1, f"data_fraction={cfg.data_fraction}: expected in (0, 1]"),
        (0 <= cfg.min_coverage <= 1, f"min_coverage={cfg.min_coverage}: expected in [0, 1]"),
        (len(cfg.jitter) == 4, f"jitter={cfg.jitter}: expected 4 values (b, c, s, h)"),
        (0 <= cfg.flip_p <= 1, f"flip_p={cfg.flip_p}: expected in [0, 1]"),
        (cfg.k_b >= 2 and cfg.k_a >= 2, f"k_a={cfg.k_a}, k_b={cfg.k_b}: expected >= 2"),
        (cfg.num_subheads >= 1, f"num_subheads={cfg.num_subheads}: expected >= 1"),
        (cfg.half_side >= 0, f"half_side={cfg.half_side}: expected >= 0"),
        (cfg.batch_size >= 1, f"batch_size={cfg.batch_size}: expected >= 1"),
        (cfg.lr > 0, f"lr={cfg.lr}: expected > 0"),
        (cfg.epochs >= 1, f"epochs={cfg.epochs}: expected >= 1"),
        (isinstance(cfg.eval_every, int) and cfg.eval_every >= 1, f"eval_every={cfg.eval_every!r}: expected an "
                                                                   f"integer >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"RunConfig: {message}")
    if cfg.k_b < DATASETS[cfg.dataset].num_classes:
        raise ValueError(f"RunConfig: k_b={cfg.k_b} is smaller than the {DATASETS[cfg.dataset].num_classes} "
                         f"classes of {cfg.dataset}")


# The paper's Table-4 presets (facts section 2) and their offline analogues.
_COCO = dict(input_size=128, prescale=0.33, jitter=(0.4, 0.4, 0.4, 0.125), sobel=True, half_side=10, lr=1e-4)
_POTSDAM = dict(input_size=200, prescale=1.0, jitter=(0.1, 0.1, 0.1, 0.1), sobel=False)
PRESETS: dict[str, dict[str, Any]] = {
    "cocostuff3": dict(_COCO, dataset="cocostuff3", k_a=15, k_b=3, lambda_b=1.5, batch_size=120),
    "cocostuff15": dict(_COCO, dataset="cocostuff15", k_a=45, k_b=15, lambda_b=1.0, batch_size=60),
    "potsdam3": dict(_POTSDAM, dataset="potsdam3", k_a=24, k_b=3, lambda_b=1.5, batch_size=75,
                     half_side=10, lr=1e-5),
    "potsdam6": dict(_POTSDAM, dataset="potsdam6", k_a=36, k_b=6, lambda_b=1.0, batch_size=60,
                     half_side=5, lr=1e-6),
    # Offline analogues: the same settings as the preset they stand in for. CamVid frames (360x480) are
    # smaller than COCO images (~640x480), so x0.5 instead of x0.33 keeps a 128 crop inside the frame;
    # Dubai has no infrared channel. Head A keeps the paper's ratio K_A = 5 K_B (COCO-3) / 3 K_B (COCO-15).
    "camvid3": dict(_COCO, dataset="camvid3", prescale=0.5, k_a=15, k_b=3, lambda_b=1.5, batch_size=120),
    "camvid11": dict(_COCO, dataset="camvid11", prescale=0.5, k_a=33, k_b=11, lambda_b=1.0, batch_size=60),
    "dubai3": dict(_POTSDAM, dataset="dubai3", prescale=0.5, k_a=24, k_b=3, lambda_b=1.5, batch_size=75,
                   half_side=10, lr=1e-5),
    "dubai5": dict(_POTSDAM, dataset="dubai5", prescale=0.5, k_a=30, k_b=5, lambda_b=1.0, batch_size=60,
                   half_side=5, lr=1e-6),
}

FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))


def make_config(preset: str | None = None, **overrides: Any) -> RunConfig:
    """Build a RunConfig from a preset and overrides; unknown names raise a ValueError naming them."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: expected one of {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}: valid names are {list(FIELDS)}")
    values = dict(PRESETS[preset]) if preset else {}
    values.update(overrides)
    if isinstance(values.get("jitter"), list):
        values["jitter"] = tuple(values["jitter"])
    return RunConfig(**values)
