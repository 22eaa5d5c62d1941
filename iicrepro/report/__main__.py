"""`python -m iicrepro.report RUNS OUT`: see iicrepro/report/__init__.py."""
from iicrepro.report.pages import main

raise SystemExit(main())
