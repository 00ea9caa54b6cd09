"""Data: synthetic degradations (``degrade``) for training and evaluation."""
