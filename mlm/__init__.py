"""mlm: masked-language-model pretraining of small BERT encoders, and fine-tuning them as classifiers."""

__version__ = "0.1.0"
