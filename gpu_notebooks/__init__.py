"""gpu_notebooks."""
