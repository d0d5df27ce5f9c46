"""The pytest side of the harness: the plugin, its hooks and the session summary; nothing else."""
