"""Engine: device and precision, distributed set-up, checkpoints, optimisation and the training loop."""
