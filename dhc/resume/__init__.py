"""Job auto-resume: training jobs interrupted by a node fault restart on healthy nodes (README: Job auto-resume)."""
