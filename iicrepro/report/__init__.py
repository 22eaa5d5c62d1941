"""The book's report: run files in, Markdown snippets and figures out (the book itself never computes).

    python -m iicrepro.report book/runs book/generated [--reference ...] [--manifest study.yaml]
        [--benchmarks benchmarks/results]

tools/build_book.sh runs this before every build. One-way flow, one module per step:

    load         run files, reference numbers, manifest -> plain dicts (and the command that fills a cell)
    frame        run dicts -> tidy pandas DataFrames (a row per run x selection rule x split; per epoch; per run)
    tables       frames -> the Results and Ablations tables (groupby / pivot, DataFrame.to_markdown)
    tables_runs  frames -> status, provenance, timings and dataset tables; bench_tables: `iicrepro bench` files
    tables_epochs  the main runs' per-epoch histories -> the epoch table and the convergence table
    answer       frame -> the sentences the Results page opens with; effects: each ablation's change, paired by
                 seed; figures: frames -> seaborn figures
                 (OUT/figures/, drawn by every build, not committed)
    scales       frames -> where IIC beats the baselines at each scale of an analogue (answer's verdicts), and
                 how its paper-scale runs compare with its CPU-scale seeds
    pages        everything above -> the snippets each page includes; `python -m iicrepro.report` (__main__)

A module imports only modules of an earlier line (tests/test_report_imports.py); no run, notebook or library
module imports this package (tests/test_study.py), so iicrepro.runner leaves it out of the run fingerprint.
"""
