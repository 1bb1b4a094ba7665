"""The live watcher: follow a log through rotation and restarts, score each connection exactly once."""
