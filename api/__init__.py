"""HTTP edge: verify, parse, normalise, start the workflow, answer fast."""
