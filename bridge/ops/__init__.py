"""The operator's tools: the CLI, Bik simulated, log lines, metrics."""
