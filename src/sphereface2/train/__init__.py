"""Training: the trainer and the config-free pieces it is made of.

* ``trainer``      ``train(cfg, out_dir, resume=None, device=None) -> TrainResult``
* ``checkpoint``   atomic checkpoints, keep-last-N, ``latest_checkpoint``, ``average_checkpoints``
* ``model_file``   ``load_trained_model(path)``: rebuild a trained backbone/head for evaluation
* ``sampler``      ``ResumableSampler``: DistributedSampler's order, resumable mid-epoch
* ``data_loading`` the per-sample-seeded training batch stream
* ``optim``        SGD parameter groups and iteration-based learning-rate schedules
* ``rng``          seeding and RNG state capture/restore
* ``validation``   flip-fused embeddings and 10-fold accuracy on .bin sets
* ``logging``      text log, JSONL metrics, TensorBoard, progress lines, ``curves.png``
* ``run_folder``   the layout of a run's output folder
* ``run_lock``     one training process per run folder (an OS file lock)
* ``failure``      what a run leaves behind when it fails mid-way (log, summary, checkpoint)
* ``label_noise_record``  ``label_noise.json``: the record of a run's synthetic label noise
* ``init_weights`` ``model.init``: a fresh run's backbone from pretrained weights (fine-tuning)
* ``classes_record``  ``classes.json``: the identity name of each class index

Import from the submodules (``from sphereface2.train.trainer import train``); this package
does not import them eagerly, so the light helpers stay light.
"""
