"""Generated cases and their truth: simulated designs, the stress grid's cells, NIST's certified
sets and their closed forms."""
