"""Getting a dataset onto disk: downloads, safe archive extraction, per-dataset acquisition, the synthetic writer."""
