"""Training: splits, evaluation metrics, model selection and the training run."""
