"""The dhc suites: every test here is a check. The plugin is loaded here and nowhere else."""

pytest_plugins = ["dhc.plugin"]
