"""harness: run a catalog of linear mixed models through several implementations and check
their agreement with R's lme4 under a documented tolerance policy."""
