"""Data: from video files on disk to model-ready clips.

splits.py / metadata_jsonl.py   split files (HMDB51, the Hub copy's JSON lines, UCF101, class folders) -> VideoRecords
lists.py                        list files (`path LABEL` lines, as MMAction2 writes them) -> VideoRecords
decode.py                       the video probe, readers, frame counting, streaming, seeking (the only
                                module that imports a video library)
sampling.py                     pure frame-index math
transforms.py                   Preprocessing: the worker half and the device half, built from the config
dataset.py                      records + sampling + decode + transforms, and the loader
cache.py                        the memory-mapped clip cache
workers.py                      decoding in worker processes (ordered_map) and batching
scan.py                         decode every video of a split, list the unreadable ones
builders.py                     config -> splits, cache, datasets (with transforms.Preprocessing.from_config,
                                the only data code that reads config)

Getting a dataset onto disk is ``actionmoe.acquire``. Never imports ``actionmoe.models``.
"""
