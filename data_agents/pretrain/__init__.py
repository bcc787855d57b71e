"""The synthetic pretraining corpus of the tiny base model (`corpus.py`)."""
