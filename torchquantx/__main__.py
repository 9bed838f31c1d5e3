"""`python -m torchquantx`: the command line."""
from .cli import main

raise SystemExit(main())
