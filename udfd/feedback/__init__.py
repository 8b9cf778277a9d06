"""The feedback loop: the flag store, the protector that screens flags, the drift monitor. Uses the core only."""
