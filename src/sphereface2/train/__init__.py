"""Training: the trainer and the config-free pieces it is made of.

* ``trainer``      ``train(cfg, out_dir, resume=None, device=None) -> TrainResult``: start-up
                   checks and the loop
* ``building``     a run's parts from its config (backbone, training set, head shard, batch)
* ``run``          ``TrainingRun``: one run's live objects, one optimiser step, checkpoints
* ``outcome``      what a run leaves: ``model.pt``, ``summary.json``, curves, ``TrainResult``
* ``stop_signals`` Ctrl-C / SIGTERM: finish the iteration, checkpoint, stop
* ``sampler``      ``ResumableSampler``: DistributedSampler's order, resumable mid-epoch
* ``data_loading`` the per-sample-seeded training batch stream
* ``optim``        SGD parameter groups and iteration-based learning-rate schedules
* ``rng``          seeding and per-sample augmentation seeds
* ``validation``   flip-fused embeddings and 10-fold accuracy on .bin sets
* ``logging``      text log, JSONL metrics, TensorBoard, progress lines, ``curves.png``
* ``parallel``     DDP for the backbone, the ranks' agreements (overflow, stop signals)
* ``run_lock``     one training process per run folder (an OS file lock)
* ``failure``      what a run leaves behind when it fails mid-way (log, summary, checkpoint)
* ``label_noise_record``  ``label_noise.json``: the record of a run's synthetic label noise
* ``init_weights`` ``model.init``: a fresh run's backbone from pretrained weights (fine-tuning)
* ``classes_record``  ``classes.json``: the identity name of each class index

The checkpoint payload (``TrainingState``), checkpoint files, the run-folder layout and
model loading live in :mod:`sphereface2.models`; ``train.checkpoint``,
``train.sharded_checkpoint``, ``train.run_folder``, ``train.model_file`` and
``train.load_errors`` are aliases of their modules there, kept for old imports.

Import from the submodules (``from sphereface2.train.trainer import train``); this package
does not import them eagerly, so the light helpers stay light.
"""
