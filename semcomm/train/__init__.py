"""Training: the ViT recipes behind the zoo, augmentation, progressive stacking, the latent codec pair, table
fitting, and backend builds (``semcomm.train.backends``). The library core never imports this package."""
