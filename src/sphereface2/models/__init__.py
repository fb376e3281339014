"""The saved-model contract: what training writes and everything else reads.

* ``training_state``      ``TrainingState``: the checkpoint payload's schema, saved from and
                          restored into a live run; the ``model.pt`` payload
* ``rng_state``           the generator states a checkpoint holds
* ``checkpoint``          atomic writes, keep-last-N, safe loading (format tags), weight averaging
* ``sharded_checkpoint``  per-rank head shards of a multi-process checkpoint
* ``run_folder``          the layout of a training run's output folder
* ``model_config``        ``build_backbone_from_config``: the one backbone recipe
* ``loading``             open a checkpoint / run folder / safetensors / ONNX file as an
                          ``EmbeddingModel``; ``load_trained_model`` rebuilds backbone and head
* ``embed``               ``embed_dataset``: run a model over a dataset (flip-fused)

train/, evaluate/, export/ and inference/ all build on this floor; it imports only
config, backbones, heads and data. Import from the submodules; this package does not import
them eagerly.
"""
