"""Keeping a library current: file-system observers with a polling fallback (``observers``),
events gathered into debounced batches per folder (``changes``), and the watcher that applies
them through the library (``watcher``)."""
