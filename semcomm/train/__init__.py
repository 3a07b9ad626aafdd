"""Training: what makes the zoo, standing on top of the library (the library core never imports this package).

* :mod:`~semcomm.train.vit`: the ViT recipe (:class:`~semcomm.train.vit.TrainConfig`, ``train``, ``export``),
  with :mod:`~semcomm.train.presets` (the tuned recipes, any geometry), :mod:`~semcomm.train.augmentation`,
  :mod:`~semcomm.train.token_dropping` (partial patch sets), :mod:`~semcomm.train.growth` (progressive
  stacking) and :mod:`~semcomm.train.schedule` (warm-up + cosine);
* :mod:`~semcomm.train.latent`: the latent codec pair; :mod:`~semcomm.train.fitting`: tables and hint coders
  fitted on a training split, and shipping pairs;
* :mod:`semcomm.train.backends`: backend builds (distillation, pruning, specialists, recipes).
"""
