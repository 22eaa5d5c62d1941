"""`python -m iicrepro.bench ARGS`: the same as `iicrepro bench ARGS` (see iicrepro/bench/__init__.py)."""
from iicrepro.bench.cli import main

raise SystemExit(main())
