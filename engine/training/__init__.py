"""Fine-tuning the dual encoder on captioned photos: the photos and their split (``data``),
cached frozen-tower features (``features``), CLIP's loss (``loss``), the training loop (``loop``),
the paired judgement of a new model against the old (``decide``), and a library's fine-tune that
saves and registers a new version (``finetune``). Imported only when a person trains: the
training code slows every start."""
