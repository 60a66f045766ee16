"""Training: optimiser and schedule, the Trainer, distributed set-up, running sums, fine-tuning, run assembly.

What training shares with prediction and evaluation (device, precision, checkpoints, restore,
views) lives in ``actionmoe.runtime``; nothing outside training and the whole-job modules
(``workflows``, ``ablation``, ``bench``) imports this package.
"""
