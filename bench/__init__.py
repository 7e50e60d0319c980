"""Benchmarks: commands that measure the product on this machine (see README, Benchmarks)."""
