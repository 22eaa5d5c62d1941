"""`iicrepro bench`: speed and memory of one training step, of the loss alone, and of evaluation.

Measures, on whatever device it runs, on synthetic tensors of each preset's shape (the paper's data is
not needed): the split of one training step (views, forward, loss, backward, optimiser; CUDA events on the
GPU, wall time on the CPU), pairs/s, the single-head epoch time extrapolated to the paper's epoch sizes,
achieved FLOP/s (forward FLOPs of model.complexity x 3 for forward + backward, two views per pair) against
a dense matmul peak measured in the same run, peak memory, the cost of activation checkpointing; the IIC
loss alone (facts section 5) for K x d per implementation, with agreement checked in the same run;
evaluation throughput (forward + argmax + confusion matrix, facts section 6). Writes one JSON file
(schema: benchmarks/README.md) that the book's Performance page reads; targets of issue 5 are judged
only on CUDA. Reference times of the original are quoted from ../shared/reference/iic-facts.md.

One-way flow, one module per job; a module imports only modules of an earlier line
(tests/test_bench_imports.py):

    common       environment record, Clock, memory, matmul peak, autocast, median, atomic JSON writer
    loss_sweep   the loss alone at K x d per implementation, agreement in float64
    loss_table4  the loss at every Table-4 head (issue 14) and the loss-choice table `auto` reads
    step         one training step, evaluation, a preset's record, the loss share of a step;
                 verdicts: issue 5's and issue 14's targets as target vs measured (pass / fail)
    precision    `--precision`: float32 against channels_last, bf16 and torch.compile;
                 memory: `--memory`, the peak of a training step at the paper's batch (one process per case)
    cli          arguments, the three kinds of run, the JSON file; `python -m iicrepro.bench` (__main__)

The CLI alone reaches this package (`iicrepro bench`), so iicrepro.runner leaves it out of the run
fingerprint (tests/test_study.py). This module only re-exports the names callers use.
"""
from iicrepro.bench.cli import main, run
from iicrepro.bench.common import PAPER_PRESETS, SCHEMA_VERSION, Clock, matmul_peak, write_json_atomic
from iicrepro.bench.loss_sweep import AGREE_TOL, LOSS_DS, LOSS_KS, bench_loss
from iicrepro.bench.loss_table4 import (CHOICE_DEFAULT, TABLE4_BATCH, TABLE4_CASES, TABLE4_IMPLS, TABLE4_TARGET,
                                        bench_loss_table4, set_choice, table4_case, write_loss_choice)
from iicrepro.bench.precision import bench_precision, precision_targets
from iicrepro.bench.step import PHASES, bench_eval, bench_preset, bench_step, build_model, loss_share
from iicrepro.bench.verdicts import table4_targets, targets

__all__ = ["main", "run", "PAPER_PRESETS", "SCHEMA_VERSION", "Clock", "matmul_peak", "write_json_atomic",
           "AGREE_TOL", "LOSS_DS", "LOSS_KS", "bench_loss", "CHOICE_DEFAULT", "TABLE4_BATCH", "TABLE4_CASES",
           "TABLE4_IMPLS", "TABLE4_TARGET", "bench_loss_table4", "set_choice", "table4_case", "write_loss_choice",
           "bench_precision", "precision_targets", "PHASES", "bench_eval", "bench_preset", "bench_step",
           "build_model", "loss_share", "table4_targets", "targets"]
