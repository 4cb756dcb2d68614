"""The workflow engine: plans of steps run as Ray tasks, with retries, timeouts, resources,
checkpoints, circuit breakers, locks, traces and events."""
