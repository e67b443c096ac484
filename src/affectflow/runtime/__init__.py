"""Plumbing every stage shares: atomic writes, GPU slots, signals, device, ffmpeg, hashing, logging."""
