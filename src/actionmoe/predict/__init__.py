"""Everything that uses a trained model: the Predictor and the ways people run it.

predictor.py   Predictor: checkpoint or ONNX model -> ranked actions; its public seam
               (``video_probs``, ``rank``) is what timeline, service and notebook build on
inputs.py      files, folders and glob patterns -> video paths
batch.py       folders of videos -> a resumable CSV / JSON-lines file
timeline.py    long videos -> windows -> segments, a JSON/CSV file and a plot
visualize.py   frame grids and bar charts of a prediction
export.py      TorchScript / torch.export / ONNX files with a sidecar

Never imports ``actionmoe.engine`` (training).
"""
