"""harness: run a catalog of linear mixed models through several implementations and check
their agreement with R's lme4 under a documented tolerance policy."""

from pathlib import Path

#: The installed package's folder: its data (catalog.yaml, divergences.yaml, data/, references/,
#: r_scripts/) live here, whichever room (core, adapters, commands, ...) reads them.
HOME = Path(__file__).resolve().parent
