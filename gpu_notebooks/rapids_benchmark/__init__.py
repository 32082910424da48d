"""rapids_benchmark."""
