"""One module per dock widget."""
