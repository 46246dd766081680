"""Training: synthetic forgeries from authentic photos, datasets and training loops."""
