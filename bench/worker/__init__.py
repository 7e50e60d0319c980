"""`python -m bench.worker` (`make bench-worker`): dispatch and notification delivery."""
