"""Teaching mode: 2D digits models, a 2-D latent toy with its energy landscape, explanations and
the Digits Fréchet Distance. Qt-free; the napari widgets live in ``napari_lsdebm.widgets.teach``."""
