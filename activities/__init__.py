"""Activities: each one side effect, idempotent by a natural key (provider + transaction + step)."""
