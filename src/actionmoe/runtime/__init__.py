"""What training, evaluation and prediction share: device and precision, checkpoints, restore, views.

Never imports ``actionmoe.engine`` (training): the prediction wing and the evaluation loop use a
trained model through this package alone. ``compat`` holds every rule for reading runs and
checkpoints written by earlier versions.
"""
