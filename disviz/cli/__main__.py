"""``python -m disviz.cli`` runs the same command line as ``python -m disviz``."""

from disviz.cli import main

raise SystemExit(main())
